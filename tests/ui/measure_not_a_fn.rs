#[runmetrics::measure]
struct NotAFunction;

#[runmetrics::measure]
const fn constant() -> u32 {
    1
}

fn main() {}
