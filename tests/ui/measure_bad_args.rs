#[runmetrics::measure(nme = "typo")]
fn a() {}

#[runmetrics::measure("x", name = "y")]
fn b() {}

#[runmetrics::measure(resources = "yes")]
fn c() {}

#[runmetrics::measure("")]
fn d() {}

fn main() {}
