//! Reading run files: the typed view every command works on, and errors
//! that say what is wrong with a file and where.
//!
//! Files of the Python `metrics` module the layout comes from (the seed's
//! keys only) read too: what they lack (counts, percentiles, histograms)
//! is `None` or empty.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

/// The newest `meta.layout_version` this reader understands: 2, whose
/// `histogram_ns` buckets carry their width (version 1's are implied by
/// [`v1_bucket_width`]); files without it are version 1.
pub const LAYOUT_VERSION: u64 = 2;

/// How deep this reader follows nested arrays and objects: serde_json's
/// limit (its recursion stays on a small stack), kept rather than lifted
/// with `unbounded_depth`: no file runmetrics writes comes near it.
pub const MAX_DEPTH: usize = 127;

/// How deep runmetrics nests a run file at most: the file's object, then
/// `meta`, whose `extra_meta` keys may nest 64 levels (itself level 1;
/// `EndRunError::ExtraMetaTooDeep` refuses deeper ones).
pub const WRITTEN_DEPTH: usize = 65;

const _: () = assert!(WRITTEN_DEPTH < MAX_DEPTH, "every written file must read");

/// Why a run file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The JSON stops before it is complete.
    #[error(
        "{} is truncated: its JSON stops unfinished at byte {at}, the end of the file \
         (a copy cut short? runmetrics itself only ever leaves complete files)",
        path.display()
    )]
    Truncated { path: PathBuf, at: u64 },
    /// The file is not JSON.
    #[error("{} is not JSON: {message} at byte {at} (line {line}, column {column})", path.display())]
    NotJson {
        path: PathBuf,
        message: String,
        at: u64,
        line: usize,
        column: usize,
    },
    /// JSON, but not laid out like a run file.
    #[error("{} is not a runmetrics run file: {why}", path.display())]
    NotARunFile { path: PathBuf, why: String },
    /// Arrays and objects nested deeper than this reader follows.
    #[error(
        "{} nests arrays and objects more than {MAX_DEPTH} levels deep (at byte {at}), \
         deeper than runmetrics writes ({WRITTEN_DEPTH} at most): it is not a run file",
        path.display()
    )]
    TooDeep { path: PathBuf, at: u64 },
    /// Laid out like a run file, but its numbers cannot be true.
    #[error("{} is corrupt: {why}; leave it out, or write it again", path.display())]
    Corrupt { path: PathBuf, why: String },
    /// What was made of the events could not be written.
    #[error("{0}")]
    Output(String),
    /// Written by a newer runmetrics than this reader.
    #[error(
        "{} has layout_version {version}, newer than this runmetrics reads ({LAYOUT_VERSION}); \
         update the runmetrics CLI (cargo install runmetrics-cli)",
        path.display()
    )]
    NewerLayout { path: PathBuf, version: u64 },
}

/// Phase or function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Phase,
    Function,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Phase => "phase",
            Kind::Function => "function",
        }
    }
}

/// One phase's or function's entry in `meta`.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub module: String,
    pub name: String,
    pub total_seconds: f64,
    pub count: Option<u64>,
    pub mean_seconds: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
    pub min_seconds: Option<f64>,
    /// Ascending; empty in older files.
    pub histogram_ns: Vec<Bucket>,
    /// The sum of the `histogram_ns` counts (it fits: [`load`] refuses a
    /// file whose counts add up past `u64::MAX`).
    pub histogram_total: u64,
}

impl Entry {
    pub fn label(&self) -> String {
        label(&self.module, &self.name)
    }
}

/// `module/name`, or the name alone when the module is empty.
pub fn label(module: &str, name: &str) -> String {
    if module.is_empty() {
        name.to_owned()
    } else {
        format!("{module}/{name}")
    }
}

/// One bucket of a `histogram_ns`: `count` regions lasted from `lower_ns`
/// to less than `lower_ns + width_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub lower_ns: u64,
    pub count: u64,
    pub width_ns: u64,
}

impl Bucket {
    /// The bucket's middle, in ns.
    pub fn middle_ns(&self) -> f64 {
        self.lower_ns as f64 + (self.width_ns - 1) as f64 / 2.0
    }
}

/// The width in ns of a layout-1 `histogram_ns` bucket (`[lower, count]`)
/// whose lower bound is `lower`: 1 under 128 ns, then 64 buckets per power
/// of two (the rule runmetrics wrote them by).
pub fn v1_bucket_width(lower: u64) -> u64 {
    if lower < 128 {
        1
    } else {
        1 << (63 - lower.leading_zeros() - 6)
    }
}

/// The sum of a histogram's counts; `None` past `u64::MAX`.
pub fn histogram_total(buckets: &[Bucket]) -> Option<u64> {
    buckets
        .iter()
        .try_fold(0u64, |sum, b| sum.checked_add(b.count))
}

/// One count name's summary.
#[derive(Clone, Debug)]
pub struct Count {
    pub name: String,
    pub last: Option<i64>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub observations: Option<u64>,
}

/// A run file's `meta`, read (its events stream by: [`load_each`]).
#[derive(Debug)]
pub struct Run {
    pub path: PathBuf,
    pub run_id: String,
    pub started_at: DateTime<FixedOffset>,
    /// When the run ended, or (a snapshot of an open run) when the file was
    /// written.
    pub until: DateTime<FixedOffset>,
    pub in_progress: bool,
    pub entries: Vec<Entry>,
    pub counts: Vec<Count>,
    pub meta: Map<String, Value>,
}

impl Run {
    /// Seconds from the start to the end (or to the snapshot).
    pub fn seconds(&self) -> f64 {
        (self.until - self.started_at)
            .num_nanoseconds()
            .map_or(0.0, |ns| ns as f64 / 1e9)
    }

    pub fn meta_u64(&self, key: &str) -> Option<u64> {
        self.meta.get(key).and_then(Value::as_u64)
    }

    pub fn meta_f64(&self, key: &str) -> Option<f64> {
        self.meta.get(key).and_then(Value::as_f64)
    }

    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta.get(key).and_then(Value::as_str)
    }
}

/// What is done with each event (and the file's `meta`) as the file
/// streams by; an `Err` stops the reading (a closed output, say).
pub type EachFn<'f> = dyn FnMut(&Map<String, Value>, Value) -> Result<(), String> + 'f;
/// A borrowed [`EachFn`].
pub type EachEvent<'a> = &'a mut EachFn<'a>;

/// Reads and checks the run file at `path`, streaming past its events
/// (`show` and `compare` need only `meta`): a run of millions of events
/// costs no more memory than one of ten.
pub fn load(path: &Path) -> Result<Run, LoadError> {
    read(path, None)
}

/// [`load`], handing every event to `each` (with `meta`) instead of
/// skipping it; none is kept in the `Run`.
pub fn load_each(path: &Path, each: EachEvent<'_>) -> Result<Run, LoadError> {
    read(path, Some(each))
}

fn read(path: &Path, mut each: Option<EachEvent<'_>>) -> Result<Run, LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(file));
    let failed = std::cell::RefCell::new(None);
    let top = Top {
        each: each.as_deref_mut(),
        failed: &failed,
    };
    let parts = serde::Deserializer::deserialize_any(&mut de, top)
        .and_then(|parts| de.end().map(|()| parts));
    if let Some(message) = failed.into_inner() {
        return Err(LoadError::Output(message));
    }
    let mut parts = parts.map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Io => read_error(std::io::Error::from(e)),
            Category::Eof => LoadError::Truncated {
                path: path.to_owned(),
                at: std::fs::metadata(path).map_or(0, |m| m.len()),
            },
            Category::Syntax if e.to_string().starts_with("recursion limit exceeded") => {
                let bytes = std::fs::read(path).unwrap_or_default();
                LoadError::TooDeep {
                    path: path.to_owned(),
                    at: byte_offset(&bytes, e.line(), e.column()),
                }
            }
            Category::Syntax => {
                // Only now is the text needed: to say which byte.
                let bytes = std::fs::read(path).unwrap_or_default();
                LoadError::NotJson {
                    path: path.to_owned(),
                    message: strip_position(&e.to_string()),
                    at: byte_offset(&bytes, e.line(), e.column()),
                    line: e.line(),
                    column: e.column(),
                }
            }
            Category::Data => LoadError::NotARunFile {
                path: path.to_owned(),
                why: strip_position(&e.to_string()),
            },
        }
    })?;
    // Events before `meta` (not how runmetrics writes them) were kept.
    let late = parts.events.take();
    let run = from_parts(path, parts)?;
    match (each, late) {
        (Some(each), Some(Value::Array(events))) => {
            for e in events {
                each(&run.meta, e).map_err(LoadError::Output)?;
            }
        }
        (_, Some(other)) => {
            return Err(LoadError::NotARunFile {
                path: path.to_owned(),
                why: format!("its `events` is {other}, not a list"),
            })
        }
        (_, None) => {}
    }
    Ok(run)
}

/// The top level of a run file: `meta` as a value; `events` skipped, or
/// handed one by one to `each`; other keys ignored.
struct Top<'a, 'f> {
    each: Option<&'a mut EachFn<'f>>,
    failed: &'a std::cell::RefCell<Option<String>>,
}

#[derive(Default)]
struct Parts {
    meta: Option<Value>,
    /// Set only when the events came before `meta` and must be kept.
    events: Option<Value>,
    /// Whether there was an `events` list at all.
    has_events: bool,
}

impl<'de> serde::de::Visitor<'de> for Top<'_, '_> {
    type Value = Parts;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a run file: an object with `meta` and `events`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Parts, A::Error> {
        let mut parts = Parts::default();
        let mut each = self.each;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "meta" => parts.meta = Some(map.next_value()?),
                "events" => {
                    parts.has_events = true;
                    match (each.as_deref_mut(), &parts.meta) {
                        (Some(f), Some(Value::Object(meta))) => map.next_value_seed(Each {
                            meta,
                            each: f,
                            failed: self.failed,
                        })?,
                        (Some(_), _) => parts.events = Some(map.next_value()?),
                        (None, _) => map.next_value_seed(SkipList)?,
                    }
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(parts)
    }
}

/// Reads past the events list without keeping anything (anything but a
/// list is an error).
struct SkipList;

impl<'de> serde::de::DeserializeSeed<'de> for SkipList {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for SkipList {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the events list")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// The events list, each event handed to `each` as it is read (anything
/// but a list is an error).
struct Each<'a, 'f> {
    meta: &'a Map<String, Value>,
    each: &'a mut EachFn<'f>,
    failed: &'a std::cell::RefCell<Option<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Each<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Each<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the events list")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(e) = seq.next_element::<Value>()? {
            if let Err(message) = (self.each)(self.meta, e) {
                *self.failed.borrow_mut() = Some(message.clone());
                return Err(serde::de::Error::custom(message));
            }
        }
        Ok(())
    }
}

/// The byte a serde_json (line, column) points at (0-based).
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> u64 {
    let line_start: usize = bytes
        .split(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(bytes.len()) as u64
}

/// serde_json's message without its " at line L column C" tail.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn from_parts(path: &Path, parts: Parts) -> Result<Run, LoadError> {
    let not_run = |why: &str| LoadError::NotARunFile {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let Some(Value::Object(meta)) = parts.meta else {
        return Err(not_run("it has no `meta` object"));
    };
    if !parts.has_events {
        return Err(not_run("it has no `events` list"));
    }
    if let Some(version) = meta.get("layout_version").and_then(Value::as_u64) {
        if version > LAYOUT_VERSION {
            return Err(LoadError::NewerLayout {
                path: path.to_owned(),
                version,
            });
        }
    }
    let run_id = meta
        .get("run_id")
        .and_then(Value::as_str)
        .ok_or_else(|| not_run("its meta has no `run_id` string"))?
        .to_owned();
    let time = |key: &str| -> Result<Option<DateTime<FixedOffset>>, LoadError> {
        match meta.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(Some)
                .map_err(|e| not_run(&format!("meta.{key} {s:?} is not an RFC 3339 time: {e}"))),
            Some(other) => Err(not_run(&format!("meta.{key} is {other}, not a time"))),
        }
    };
    let started_at = time("started_at")?.ok_or_else(|| not_run("its meta has no `started_at`"))?;
    let ended_at = time("ended_at")?;
    let flushed_at = time("flushed_at")?;
    let in_progress = meta
        .get("in_progress")
        .and_then(Value::as_bool)
        .unwrap_or(ended_at.is_none());
    let until = ended_at.or(flushed_at).unwrap_or(started_at);
    let mut entries = Vec::new();
    for (key, kind, name_key) in [
        ("phase_durations_seconds_total", Kind::Phase, "phase"),
        ("function_durations_seconds_total", Kind::Function, "name"),
    ] {
        let list = match meta.get(key) {
            Some(Value::Array(list)) => list,
            None => &Vec::new(),
            Some(_) => return Err(not_run(&format!("meta.{key} is not a list"))),
        };
        for e in list {
            let entry = entry(e, kind, name_key).ok_or_else(|| {
                not_run(&format!(
                    "an entry of meta.{key} lacks `{name_key}` or `duration_seconds_total`: {e}"
                ))
            })?;
            entries.push(entry.map_err(|why| LoadError::Corrupt {
                path: path.to_owned(),
                why,
            })?);
        }
    }
    let counts = meta
        .get("counts")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(count).collect())
        .unwrap_or_default();
    Ok(Run {
        path: path.to_owned(),
        run_id,
        started_at,
        until,
        in_progress,
        entries,
        counts,
        meta,
    })
}

/// An entry of `meta`; `None` without its name or total, `Some(Err(why))`
/// when its figures cannot be true.
fn entry(e: &Value, kind: Kind, name_key: &str) -> Option<Result<Entry, String>> {
    let f = |k: &str| e.get(k).and_then(Value::as_f64);
    let module = e
        .get("module")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let name = e.get(name_key)?.as_str()?.to_owned();
    let total_seconds = f("duration_seconds_total")?;
    // `[lower, count, width]`, or layout 1's `[lower, count]`.
    let histogram_ns: Vec<Bucket> = e
        .get("histogram_ns")
        .and_then(Value::as_array)
        .map(|buckets| {
            buckets
                .iter()
                .filter_map(|b| {
                    let lower_ns = b.get(0)?.as_u64()?;
                    let count = b.get(1)?.as_u64()?;
                    let width_ns = match b.get(2) {
                        Some(w) => w.as_u64()?.max(1),
                        None => v1_bucket_width(lower_ns),
                    };
                    Some(Bucket {
                        lower_ns,
                        count,
                        width_ns,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(histogram_total) = histogram_total(&histogram_ns) else {
        return Some(Err(format!(
            "the histogram_ns counts of {} {} add up past {} regions",
            kind.name(),
            label(&module, &name),
            u64::MAX
        )));
    };
    Some(Ok(Entry {
        kind,
        module,
        name,
        total_seconds,
        count: e.get("count").and_then(Value::as_u64),
        min_seconds: f("min_seconds"),
        mean_seconds: f("mean_seconds"),
        p50_seconds: f("p50_seconds"),
        p90_seconds: f("p90_seconds"),
        p99_seconds: f("p99_seconds"),
        max_seconds: f("max_seconds"),
        histogram_ns,
        histogram_total,
    }))
}

fn count(c: &Value) -> Option<Count> {
    let i = |k: &str| c.get(k).and_then(Value::as_i64);
    Some(Count {
        name: c.get("name")?.as_str()?.to_owned(),
        last: i("last"),
        min: i("min"),
        max: i("max"),
        observations: c.get("observations").and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    /// A file whose `meta` holds an array nested `levels` deep.
    fn nested_file(dir: &Path, levels: usize) -> PathBuf {
        let path = dir.join(format!("nested{levels}.json"));
        let deep = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let text = format!(
            r#"{{"meta": {{"run_id": "r", "started_at": "2026-11-25T07:10:23+00:00", "deep": {deep}}}, "events": []}}"#
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_reader_follows_max_depth_levels_and_says_so_past_them() {
        let dir = tempfile::tempdir().unwrap();
        // The file's object and meta are two levels.
        assert!(load(&nested_file(dir.path(), MAX_DEPTH - 2)).is_ok());
        match load(&nested_file(dir.path(), MAX_DEPTH - 1)) {
            Err(e @ LoadError::TooDeep { .. }) => {
                assert!(
                    e.to_string().contains("deeper than runmetrics writes"),
                    "{e}"
                )
            }
            other => panic!("expected TooDeep, got {other:?}"),
        }
    }

    #[test]
    fn events_before_meta_must_be_a_list_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(
            &path,
            r#"{"events": null, "meta": {"run_id": "r", "started_at": "2026-11-25T07:10:23+00:00"}}"#,
        )
        .unwrap();
        for each in [false, true] {
            let r = if each {
                load_each(&path, &mut |_, _| Ok(()))
            } else {
                load(&path)
            };
            assert!(
                matches!(r, Err(LoadError::NotARunFile { .. })),
                "load_each: {each}: {r:?}"
            );
        }
    }

    #[test]
    fn a_position_becomes_a_byte() {
        let text = b"{\n  \"a\": 1,\n  x\n}";
        assert_eq!(byte_offset(text, 3, 3), 14);
        assert_eq!(text[14], b'x');
        assert_eq!(byte_offset(text, 1, 1), 0);
    }
}
