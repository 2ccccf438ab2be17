#[runmetrics::measure(nme = "typo")]
fn a() {}

#[runmetrics::measure("x", name = "y")]
fn b() {}

#[runmetrics::measure(resources = "yes")]
fn c() {}

#[runmetrics::measure("")]
fn d() {}

#[runmetrics::measure(fenced = 1)]
fn e() {}

fn main() {}
