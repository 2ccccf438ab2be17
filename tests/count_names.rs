//! Count names and dynamic phase names are found by their text, whatever
//! address they come from: many names interleaved, some through one reused
//! `String` buffer whose text changes at the same address, some through a
//! fresh `format!` copy each time, many of equal length differing only in
//! the middle (alike to a hash of their ends), short and long, on two
//! threads one after the other; the run file's counts and phase counts are
//! checked against a plain `HashMap` the test keeps.

mod common;
use std::collections::HashMap;

use common::{read_run_file, Lcg};
use runmetrics::{Config, Recorder};
use serde_json::Value;

/// The names: more than any small cache holds, in shapes that collide
/// under a hash of the address, the length or the ends.
fn names() -> Vec<String> {
    let mut v = Vec::new();
    // Equal length, equal ends, differing in the middle only.
    v.extend((0..200).map(|i| format!("shard_{i:04}_of_queue_depth")));
    // Long (over 32 bytes), differing at one byte past the first 16.
    v.extend((0..100).map(|i| format!("a_rather_long_count_name_{i:03}_of_the_decoder_stage")));
    // Short: one to three bytes.
    v.extend((b'a'..=b'z').map(|c| (c as char).to_string()));
    v.extend((0..100).map(|i| format!("{}{}", (b'a' + i / 10) as char, i % 10)));
    v.extend((0..50).map(|i| format!("x{i:02}")));
    // 9 to 16 bytes sharing their first 8, and 4 to 7 sharing their first 4.
    v.extend((0..60).map(|i| format!("counter_{i:02}")));
    v.extend((0..40).map(|i| format!("queue_depth_{i:04}")));
    v.extend((0..30).map(|i| format!("cnt{i:02}")));
    // Lengths 4 to 16, at the words' boundaries.
    v.extend((4..=16).map(|n| "y".repeat(n - 1) + "z"));
    v.extend((4..=16).map(|n| "z".repeat(n)));
    v
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Oracle {
    observations: u64,
    last: i64,
    min: i64,
    max: i64,
}

/// One thread's share: `calls` observations of 1 to 11 distinct names
/// each, each name given one of three ways, and now and then a dynamic
/// phase of the same name.
fn work(
    rec: &Recorder,
    names: &[String],
    seed: u64,
    calls: usize,
    counts: &mut HashMap<String, Oracle>,
    phases: &mut HashMap<String, u64>,
) {
    let mut rng = Lcg(seed);
    // Eleven buffers, each reused for every name it carries: its address
    // stays while its text changes.
    let mut buffers: Vec<String> = (0..11).map(|_| String::with_capacity(64)).collect();
    let addresses: Vec<*const u8> = buffers.iter().map(|b| b.as_ptr()).collect();
    let mut fresh: Vec<String> = Vec::new();
    for _ in 0..calls {
        let n = 1 + rng.below(11) as usize;
        let mut picked: Vec<usize> = Vec::new();
        while picked.len() < n {
            let i = rng.below(names.len() as u64) as usize;
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        fresh.clear();
        let mut how = Vec::new();
        for (slot, &i) in picked.iter().enumerate() {
            let way = rng.below(3);
            if way == 1 {
                buffers[slot].clear();
                buffers[slot].push_str(&names[i]);
            } else if way == 2 {
                fresh.push(String::from(names[i].as_str()));
            }
            how.push(way);
        }
        let mut fresh_iter = fresh.iter();
        let mut call: Vec<(&str, i64)> = Vec::new();
        for (slot, (&i, &way)) in picked.iter().zip(&how).enumerate() {
            let value = rng.below(2001) as i64 - 1000;
            let name: &str = match way {
                0 => &names[i],
                1 => &buffers[slot],
                _ => fresh_iter.next().expect("a fresh copy"),
            };
            call.push((name, value));
            let e = counts.entry(names[i].clone()).or_insert(Oracle {
                observations: 0,
                last: value,
                min: value,
                max: value,
            });
            e.observations += 1;
            e.last = value;
            e.min = e.min.min(value);
            e.max = e.max.max(value);
        }
        rec.observe_counts(&call);
        if rng.below(4) == 0 {
            let i = picked[0];
            let name: &str = if how[0] == 1 { &buffers[0] } else { &names[i] };
            drop(rec.phase_dynamic(name, "count_names"));
            *phases.entry(names[i].clone()).or_default() += 1;
        }
    }
    let now: Vec<*const u8> = buffers.iter().map(|b| b.as_ptr()).collect();
    assert_eq!(
        now, addresses,
        "the reused buffers kept their addresses (else the test shows less)"
    );
}

#[test]
fn counts_by_name_match_a_hash_map_whatever_the_names_address() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    let names = names();
    let (mut counts, mut phases) = (HashMap::new(), HashMap::new());
    // Two threads one after the other, so the last value of a name is the
    // second thread's if it had one.
    for seed in [1, 2] {
        std::thread::scope(|s| {
            s.spawn(|| work(&rec, &names, seed, 40_000, &mut counts, &mut phases));
        });
    }
    let file = read_run_file(rec.end_run(Value::Null).unwrap());
    let in_file: HashMap<String, Oracle> = file["meta"]["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                Oracle {
                    observations: c["observations"].as_u64().unwrap(),
                    last: c["last"].as_i64().unwrap(),
                    min: c["min"].as_i64().unwrap(),
                    max: c["max"].as_i64().unwrap(),
                },
            )
        })
        .collect();
    assert_eq!(counts.len(), names.len(), "every name was observed");
    for (name, want) in &counts {
        assert_eq!(in_file.get(name), Some(want), "{name}");
    }
    assert_eq!(in_file.len(), counts.len(), "no other name");
    let phases_in_file: HashMap<String, u64> = file["meta"]["phase_durations_seconds_total"]
        .as_array()
        .expect("phases")
        .iter()
        .filter(|e| e["module"] == "count_names")
        .map(|e| {
            (
                e["phase"].as_str().unwrap().to_owned(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(phases_in_file, phases);
}
