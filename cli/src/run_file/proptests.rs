//! Property tests of the reader: any file, real ones mutated byte by byte
//! or value by value, gives `load` and `load` with its events iterated an `Ok` or a typed
//! `LoadError` within seconds, never a panic or a hang; and a generated
//! valid run file's entries, counts and events load back as written.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::{load, Entry, Event, Kind, LoadError, Run};

/// The real files the mutations start from: the fixtures (the seed
/// module's file and broken ones among them), the golden layout and a
/// file the recorder writes, with extra_meta, counts and events.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<PathBuf> = [
            "base.json",
            "new.json",
            "seed.json",
            "newer.json",
            "not_a_run.json",
            "truncated.json",
            "overflow/histogram.json",
            "overflow/counts/a.json",
        ]
        .iter()
        .map(|f| root.join("tests/fixtures").join(f))
        .collect();
        files.push(root.join("../tests/golden/run_file_shape.json"));
        let mut seeds: Vec<Vec<u8>> = files
            .iter()
            .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
            .collect();
        seeds.push(recorded());
        seeds
    })
}

/// A run file as the recorder writes it.
fn recorded() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let rec = runmetrics::Recorder::new(runmetrics::Config::new()).unwrap();
    rec.start_run(dir.path()).unwrap();
    for i in 0..20 {
        let _t = rec.phase("step", "prop");
        if i % 5 == 0 {
            rec.observe_counts(&[("items", i)]);
        }
    }
    {
        let _f = rec.function("work", "prop");
    }
    let path = rec
        .end_run(json!({"note": "a", "nested": {"list": [1, [2, {"x": null}]]}}))
        .unwrap();
    std::fs::read(path).unwrap()
}

/// What a reader gave.
type Loaded = Result<Run, LoadError>;

/// Reads `bytes` as a file with `load`, and with `load` then every event
/// (the first error of the iteration is what it gave), each on its
/// own thread so that a panic or a hang (10 s) fails the property instead
/// of the test binary; returns what each gave.
fn read_both(bytes: &[u8]) -> Result<(Loaded, Loaded), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("run.json");
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    let on_a_thread = |each: bool| -> Result<Loaded, String> {
        let (tx, rx) = mpsc::channel();
        let path = path.clone();
        std::thread::spawn(move || {
            let run = load(&path).and_then(|run| {
                if each {
                    for e in run.events()? {
                        e?;
                    }
                }
                Ok(run)
            });
            let _ = tx.send(run);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(run) => Ok(run),
            Err(mpsc::RecvTimeoutError::Timeout) => Err("hung for 10 s".to_owned()),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("panicked".to_owned()),
        }
    };
    Ok((on_a_thread(false)?, on_a_thread(true)?))
}

/// The property every input must have.
fn reads_or_says_why(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (plain, each) = read_both(bytes).map_err(TestCaseError::fail)?;
    for r in [&plain, &each] {
        match r {
            Ok(run) => {
                for e in run.entries() {
                    prop_assert!(super::histogram_total(&e.histogram_ns).is_some());
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
    // Both readers agree on what the file is, but `load` skips the events
    // without reading their strings or nesting (a lone surrogate escape,
    // an event nested past the limit): only iterating the events sees those.
    match (&plain, &each) {
        (Ok(a), Ok(b)) => {
            prop_assert_eq!(&a.meta.run_id, &b.meta.run_id);
            prop_assert_eq!(a.entries().count(), b.entries().count());
        }
        (Err(_), Err(_)) | (Ok(_), Err(LoadError::NotJson { .. } | LoadError::TooDeep { .. })) => {}
        (a, b) => {
            return Err(TestCaseError::fail(format!(
                "load and iterating its events disagree: {:?} / {:?}",
                a.as_ref().map(|r| &r.meta.run_id),
                b.as_ref().map(|r| &r.meta.run_id)
            )))
        }
    }
    Ok(())
}

/// One change to a file's bytes.
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(usize),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// Copies a stretch to another place (a repeated key, a doubled list).
    Duplicate(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to JSON, more often than chance would pick them.
    let byte = prop_oneof![
        4 => any::<u8>(),
        1 => prop::sample::select(b"{}[]\",:0123456789-.eE\\ntfu".to_vec()),
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Mutation::Set(at, b)),
        (any::<usize>(), prop::collection::vec(byte, 1..8))
            .prop_map(|(at, b)| Mutation::Insert(at, b)),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Mutation::Remove(at, n)),
        (any::<usize>(), 1..256usize, any::<usize>())
            .prop_map(|(from, n, to)| Mutation::Duplicate(from, n, to)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match *m {
        Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
        Mutation::Set(i, b) => {
            if !bytes.is_empty() {
                let i = i % bytes.len();
                bytes[i] = b;
            }
        }
        Mutation::Insert(i, ref b) => {
            let i = at(i, bytes.len());
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = at(i, bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Duplicate(from, n, to) => {
            let from = at(from, bytes.len());
            let end = (from + n).min(bytes.len());
            let stretch = bytes[from..end].to_vec();
            let to = at(to, bytes.len());
            bytes.splice(to..to, stretch);
        }
    }
}

/// Any JSON value, a few levels deep, with the numbers a run file's
/// readers must beware of (u64::MAX, negatives, fractions, huge floats).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![0u64, 1, u64::MAX, u64::MAX - 1, 1 << 63]).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z_]{0,12}".prop_map(Value::from),
        Just(Value::from("2026-11-25T07:10:23.944526+00:00")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,10}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// The JSON pointer of every value in `v` (itself included), in a fixed
/// order, found without recursion.
fn pointers(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![(v, String::new())];
    while let Some((v, at)) = todo.pop() {
        match v {
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate().rev() {
                    todo.push((c, format!("{at}/{i}")));
                }
            }
            Value::Object(m) => {
                for (k, c) in m.iter().rev() {
                    let k = k.replace('~', "~0").replace('/', "~1");
                    todo.push((c, format!("{at}/{k}")));
                }
            }
            _ => {}
        }
        out.push(at);
    }
    out
}

/// Replaces the `pick`-th value of `file` with `with`, or removes it from
/// its object or list when `with` is `None`.
fn replace_value(file: &mut Value, pick: usize, with: Option<Value>) {
    let all = pointers(file);
    let at = &all[pick % all.len()];
    match with {
        Some(v) => {
            if let Some(slot) = file.pointer_mut(at) {
                *slot = v;
            }
        }
        None => {
            let Some((parent, last)) = at.rsplit_once('/') else {
                *file = Value::Null;
                return;
            };
            let key = last.replace("~1", "/").replace("~0", "~");
            match file.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.shift_remove(&key);
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = key.parse::<usize>() {
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// The seeds that parse as JSON, parsed.
fn json_seeds() -> &'static [Value] {
    static JSON: OnceLock<Vec<Value>> = OnceLock::new();
    JSON.get_or_init(|| {
        seeds()
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect()
    })
}

/// A phase or function entry to write, and what it must load back as.
#[derive(Clone, Debug)]
struct Written {
    kind: Kind,
    module: String,
    name: String,
    total: f64,
    count: u64,
    stats: [Option<f64>; 5],
    /// `[lower, count, width]`; layout 1's `[lower, count]` where width is 0.
    histogram: Vec<(u64, u64, u64)>,
}

fn seconds() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..1e4f64,
        (0.0..1e-6f64),
        any::<f64>().prop_filter("finite and not negative", |f| f.is_finite() && *f >= 0.0),
    ]
}

fn written() -> impl Strategy<Value = Written> {
    (
        prop::sample::select(vec![Kind::Phase, Kind::Function]),
        "[a-z_]{0,8}",
        "[a-zA-Z_ /é\\\"]{1,12}",
        seconds(),
        any::<u64>(),
        prop::array::uniform5(prop::option::of(seconds())),
        prop::collection::btree_map(any::<u64>(), (0..u64::MAX / 64, 0..3u64), 0..20),
    )
        .prop_map(|(kind, module, name, total, count, stats, hist)| Written {
            kind,
            module,
            name,
            total,
            count,
            stats,
            histogram: hist
                .into_iter()
                .map(|(lower, (count, width))| (lower, count, width))
                .collect(),
        })
}

/// A run file holding `entries` and `events` (phase events), laid out as
/// runmetrics lays it out.
fn run_file(entries: &[Written], events: &[(u64, f64)], pretty: bool) -> Vec<u8> {
    let list = |kind: Kind| -> Vec<Value> {
        entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| {
                let mut m = Map::new();
                m.insert("module".into(), json!(e.module));
                let name_key = if kind == Kind::Phase { "phase" } else { "name" };
                m.insert(name_key.into(), json!(e.name));
                m.insert("duration_seconds_total".into(), json!(e.total));
                m.insert("count".into(), json!(e.count));
                for (k, v) in [
                    "mean_seconds",
                    "p50_seconds",
                    "p90_seconds",
                    "p99_seconds",
                    "max_seconds",
                ]
                .iter()
                .zip(e.stats)
                {
                    if let Some(v) = v {
                        m.insert((*k).into(), json!(v));
                    }
                }
                let buckets: Vec<Value> = e
                    .histogram
                    .iter()
                    .map(|&(lower, count, width)| match width {
                        0 => json!([lower, count]),
                        w => json!([lower, count, w]),
                    })
                    .collect();
                m.insert("histogram_ns".into(), Value::Array(buckets));
                Value::Object(m)
            })
            .collect()
    };
    let events: Vec<Value> = events
        .iter()
        .map(|(offset_ns, duration)| {
            json!({"timestamp": "2026-11-25T07:10:23.944526+00:00", "event": "phase_timing",
                   "module": "m", "phase": "p", "duration_seconds": duration, "thread": 0,
                   "start_offset_seconds": 0.0, "offset_ns": offset_ns})
        })
        .collect();
    let file = json!({
        "meta": {
            "run_id": "20261125-071023-abcdef",
            "started_at": "2026-11-25T07:10:23.944526+00:00",
            "ended_at": "2026-11-25T07:10:25.944526+00:00",
            "phase_durations_seconds_total": list(Kind::Phase),
            "function_durations_seconds_total": list(Kind::Function),
            "counts": [{"name": "items", "last": -3, "min": i64::MIN, "max": i64::MAX, "observations": u64::MAX}],
            "layout_version": 1,
        },
        "events": events,
    });
    if pretty {
        serde_json::to_vec_pretty(&file).unwrap()
    } else {
        serde_json::to_vec(&file).unwrap()
    }
}

fn same(e: &Entry, w: &Written) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.kind, w.kind);
    prop_assert_eq!(&e.module, &w.module);
    prop_assert_eq!(&e.name, &w.name);
    prop_assert_eq!(e.stats.duration_seconds_total, w.total);
    prop_assert_eq!(e.stats.count, Some(w.count));
    let got = [
        e.stats.mean_seconds,
        e.stats.p50_seconds,
        e.stats.p90_seconds,
        e.stats.p99_seconds,
        e.stats.max_seconds,
    ];
    prop_assert_eq!(got, w.stats);
    let want: Vec<super::Bucket> = w
        .histogram
        .iter()
        .map(|&(lower_ns, count, width)| super::Bucket {
            lower_ns,
            count,
            width_ns: match width {
                0 => runmetrics_format::v1_bucket_width(lower_ns),
                w => w,
            },
        })
        .collect();
    prop_assert_eq!(&e.histogram_ns, &want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_bytes_load_or_say_why(
        seed in 0..64usize,
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let seeds = seeds();
        let mut bytes = seeds[seed % seeds.len()].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        reads_or_says_why(&bytes)?;
    }

    #[test]
    fn mutated_values_load_or_say_why(
        seed in 0..64usize,
        changes in prop::collection::vec((any::<usize>(), prop::option::of(any_json())), 1..4),
        deepen in prop::option::of((any::<usize>(), 1..300usize)),
        pretty in any::<bool>(),
    ) {
        let seeds = json_seeds();
        let mut file = seeds[seed % seeds.len()].clone();
        for (pick, with) in changes {
            replace_value(&mut file, pick, with);
        }
        // A value wrapped in up to 300 lists: around the reader's limit.
        if let Some((pick, levels)) = deepen {
            let all = pointers(&file);
            if let Some(slot) = file.pointer_mut(&all[pick % all.len()]) {
                let mut v = slot.take();
                for _ in 0..levels {
                    v = Value::Array(vec![v]);
                }
                *slot = v;
            }
        }
        let bytes = if pretty {
            serde_json::to_vec_pretty(&file).unwrap()
        } else {
            serde_json::to_vec(&file).unwrap()
        };
        reads_or_says_why(&bytes)?;
    }

    #[test]
    fn a_written_run_loads_back_as_written(
        entries in prop::collection::vec(written(), 0..8),
        events in prop::collection::vec((any::<u64>(), seconds()), 0..20),
        pretty in any::<bool>(),
    ) {
        let bytes = run_file(&entries, &events, pretty);
        let (plain, each) = read_both(&bytes).map_err(TestCaseError::fail)?;
        let run = plain.map_err(|e| TestCaseError::fail(e.to_string()))?;
        // The reader lists phases, then functions, each in file order.
        let mut want: Vec<&Written> = entries.iter().filter(|e| e.kind == Kind::Phase).collect();
        want.extend(entries.iter().filter(|e| e.kind == Kind::Function));
        prop_assert_eq!(run.entries().count(), want.len());
        for (e, w) in run.entries().zip(want) {
            same(e, w)?;
        }
        let c = &run.meta.counts[0];
        prop_assert_eq!((c.last, c.min, c.max, c.observations), (-3, i64::MIN, i64::MAX, u64::MAX));
        prop_assert!(each.is_ok());
        // Iterating the events gives every one, in order, as written.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(&path, &bytes).unwrap();
        let mut seen = Vec::new();
        let fail = |e: LoadError| TestCaseError::fail(e.to_string());
        for e in load(&path).map_err(fail)?.events().map_err(fail)? {
            match e.map_err(fail)? {
                Event::Phase(p) => seen.push((p.offset_ns, Some(p.duration_seconds))),
                other => seen.push((other.offset_ns(), None)),
            }
        }
        let want: Vec<_> = events.iter().map(|(o, d)| (Some(*o), Some(*d))).collect();
        prop_assert_eq!(seen, want);
    }
}
