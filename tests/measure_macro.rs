//! `#[measure]` in every form it accepts: bare, named, with a module, with
//! resources, fenced, on methods, generics, async fns, and early returns.

mod common;

use common::block_on;
use runmetrics::{Config, Recorder};
use serde_json::Value;

#[runmetrics::measure]
fn bare() -> u32 {
    1
}

#[runmetrics::measure("renamed")]
fn with_name() {}

#[runmetrics::measure(name = "keyed", module = "custom")]
fn with_keys() {}

#[runmetrics::measure("heavy", module = "init", resources = true)]
fn with_resources() -> usize {
    vec![0u8; 1 << 16].len()
}

#[runmetrics::measure("tight", fenced = true)]
fn fenced() -> u32 {
    7
}

#[runmetrics::measure(fenced = true, resources = true, module = "init")]
fn fenced_heavy() {}

#[runmetrics::measure(fenced = false)]
fn unfenced() {}

#[runmetrics::measure]
fn early_return(x: u32) -> u32 {
    if x > 1 {
        return x;
    }
    0
}

#[runmetrics::measure]
fn generic<T: std::fmt::Debug>(t: T) -> String {
    format!("{t:?}")
}

struct Engine;

impl Engine {
    #[runmetrics::measure(module = "engine")]
    fn step(&self, n: u32) -> u32 {
        n * 2
    }
}

#[runmetrics::measure]
async fn awaited(n: u32) -> u32 {
    std::future::ready(n).await + 1
}

#[test]
fn every_form_records_under_the_right_name_and_module() {
    // #[measure] uses the global recorder: this is the only test in this process.
    let _keep_a_handle_too = Recorder::new(Config::new()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    runmetrics::start_run(dir.path()).unwrap();
    assert_eq!(bare(), 1);
    with_name();
    with_keys();
    assert_eq!(with_resources(), 1 << 16);
    assert_eq!(fenced(), 7);
    fenced_heavy();
    unfenced();
    assert_eq!(early_return(5), 5);
    assert_eq!(early_return(0), 0);
    assert_eq!(generic(3u8), "3");
    assert_eq!(generic("s"), "\"s\"");
    assert_eq!(Engine.step(2), 4);
    assert_eq!(block_on(awaited(1)), 2);
    let path = runmetrics::end_run(Value::Null).unwrap();
    let file = common::read_run_file(path);
    let got: Vec<(String, String, u64)> = file["meta"]["function_durations_seconds_total"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["module"].as_str().unwrap().to_owned(),
                e["name"].as_str().unwrap().to_owned(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let here = module_path!().to_owned();
    let want = vec![
        (here.clone(), "bare".to_owned(), 1),
        (here.clone(), "renamed".to_owned(), 1),
        ("custom".to_owned(), "keyed".to_owned(), 1),
        ("init".to_owned(), "heavy".to_owned(), 1),
        (here.clone(), "tight".to_owned(), 1),
        ("init".to_owned(), "fenced_heavy".to_owned(), 1),
        (here.clone(), "unfenced".to_owned(), 1),
        (here.clone(), "early_return".to_owned(), 2),
        (here.clone(), "generic".to_owned(), 2),
        ("engine".to_owned(), "step".to_owned(), 1),
        (here, "awaited".to_owned(), 1),
    ];
    assert_eq!(got, want);
    let heavy = &file["meta"]["function_durations_seconds_total"][3];
    assert_eq!(heavy["resources"]["calls"], 1);
    let fenced_heavy = &file["meta"]["function_durations_seconds_total"][5];
    assert_eq!(fenced_heavy["resources"]["calls"], 1);
}
