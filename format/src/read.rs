//! Reading a run file: `meta` typed, the events streamed by one at a time,
//! and errors that say what is wrong with a file and where.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::{Entry, Events, Kind, Meta, Timestamp, LAYOUT_VERSION};

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
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be read at all.
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The JSON stops before it is complete.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        at: u64,
    },
    /// The file is not JSON.
    NotJson {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// The byte (0-based).
        at: u64,
        /// The line (1-based).
        line: usize,
        /// The column (1-based).
        column: usize,
    },
    /// JSON, but not laid out like a run file.
    NotARunFile {
        /// The file.
        path: PathBuf,
        /// Why not.
        why: String,
    },
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    TooDeep {
        /// The file.
        path: PathBuf,
        /// Where, in bytes.
        at: u64,
    },
    /// Laid out like a run file, but its numbers cannot be true.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What cannot be.
        why: String,
    },
    /// Written by a newer layout than [`LAYOUT_VERSION`].
    NewerLayout {
        /// The file.
        path: PathBuf,
        /// Its `meta.layout_version`.
        version: u64,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ReadError::Truncated { path, at } => write!(
                f,
                "{} is truncated: its JSON stops unfinished at byte {at}, the end of the file \
                 (a copy cut short? runmetrics itself only ever leaves complete files)",
                path.display()
            ),
            ReadError::NotJson {
                path,
                message,
                at,
                line,
                column,
            } => write!(
                f,
                "{} is not JSON: {message} at byte {at} (line {line}, column {column})",
                path.display()
            ),
            ReadError::NotARunFile { path, why } => {
                write!(f, "{} is not a runmetrics run file: {why}", path.display())
            }
            ReadError::TooDeep { path, at } => write!(
                f,
                "{} nests arrays and objects more than {MAX_DEPTH} levels deep (at byte {at}), \
                 deeper than runmetrics writes ({WRITTEN_DEPTH} at most): it is not a run file",
                path.display()
            ),
            ReadError::Corrupt { path, why } => write!(
                f,
                "{} is corrupt: {why}; leave it out, or write it again",
                path.display()
            ),
            ReadError::NewerLayout { path, version } => write!(
                f,
                "{} has layout_version {version}, newer than this runmetrics reads \
                 ({LAYOUT_VERSION}); update the runmetrics CLI (cargo install runmetrics-cli)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A run file's `meta`, read; its events stream by ([`RunFile::events`]).
///
/// Files of the Python `metrics` module the layout comes from read too:
/// what they lack is `None` or empty. A file of layout 2 or later must have
/// every key runmetrics writes (a key renamed or dropped is an error, not
/// a blank); layout 1 grew keys without a new version, so its files, like
/// the seed's, read with whatever they have.
#[derive(Clone, Debug)]
pub struct RunFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its `meta`.
    pub meta: Meta,
}

impl RunFile {
    /// Reads and checks the run file at `path`, streaming past its events
    /// without reading them: a run of millions of events costs no more
    /// memory than one of ten.
    pub fn open(path: impl AsRef<Path>) -> Result<RunFile, ReadError> {
        read(path.as_ref())
    }

    /// The file's events, in file order, read one at a time as the
    /// iterator is advanced (the file is opened again): none is kept, so
    /// a run of millions of events is read in the memory of one. An item
    /// is an error when the file changed since [`RunFile::open`] into one
    /// that does not read; the iterator ends after it.
    pub fn events(&self) -> Result<Events, ReadError> {
        Events::open(&self.path)
    }

    /// The phases, then the functions, each in file order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.meta.entries()
    }

    /// Whether the file is a snapshot of a run still open.
    pub fn in_progress(&self) -> bool {
        self.meta
            .in_progress
            .unwrap_or(self.meta.ended_at.is_none())
    }

    /// When the run ended, or (a snapshot of an open run) when the file was
    /// written.
    pub fn until(&self) -> Timestamp {
        self.meta
            .ended_at
            .or(self.meta.flushed_at)
            .unwrap_or(self.meta.started_at)
    }

    /// Seconds from the start to the end (or to the snapshot).
    pub fn seconds(&self) -> f64 {
        (self.until() - self.meta.started_at)
            .num_nanoseconds()
            .map_or(0.0, |ns| ns as f64 / 1e9)
    }
}

fn read(path: &Path) -> Result<RunFile, ReadError> {
    let read_error = |source| ReadError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(file));
    let failed = RefCell::new(None);
    let top = Top {
        path,
        failed: &failed,
    };
    let parts = serde::Deserializer::deserialize_any(&mut de, top)
        .and_then(|parts| de.end().map(|()| parts));
    if let Some(e) = failed.into_inner() {
        return Err(e);
    }
    let parts = parts.map_err(|e| json_error(path, e))?;
    let not_run = |why: &str| ReadError::NotARunFile {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let meta = match (parts.meta, parts.events) {
        (None, _) => return Err(not_run("it has no `meta` object")),
        (_, false) => return Err(not_run("it has no `events` list")),
        (Some(meta), true) => meta,
    };
    Ok(RunFile {
        path: path.to_owned(),
        meta,
    })
}

/// What a serde_json error means for the file at `path`.
pub(crate) fn json_error(path: &Path, e: serde_json::Error) -> ReadError {
    let read_error = |source| ReadError::Read {
        path: path.to_owned(),
        source,
    };
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => read_error(std::io::Error::from(e)),
        Category::Eof => ReadError::Truncated {
            path: path.to_owned(),
            at: std::fs::metadata(path).map_or(0, |m| m.len()),
        },
        Category::Syntax if e.to_string().starts_with("recursion limit exceeded") => {
            let bytes = std::fs::read(path).unwrap_or_default();
            ReadError::TooDeep {
                path: path.to_owned(),
                at: byte_offset(&bytes, e.line(), e.column()),
            }
        }
        Category::Syntax => {
            // Only now is the text needed: to say which byte.
            let bytes = std::fs::read(path).unwrap_or_default();
            ReadError::NotJson {
                path: path.to_owned(),
                message: strip_position(&e.to_string()),
                at: byte_offset(&bytes, e.line(), e.column()),
                line: e.line(),
                column: e.column(),
            }
        }
        Category::Data => ReadError::NotARunFile {
            path: path.to_owned(),
            why: strip_position(&e.to_string()),
        },
    }
}

/// What `meta`'s JSON must be to be read as a [`Meta`]: an object, of a
/// layout this reader knows, complete if of layout 2 or later; then typed,
/// and its numbers checked.
fn typed_meta(path: &Path, meta: Value) -> Result<Meta, ReadError> {
    let not_run = |why: String| ReadError::NotARunFile {
        path: path.to_owned(),
        why,
    };
    let Value::Object(map) = meta else {
        return Err(not_run("it has no `meta` object".to_owned()));
    };
    let version = map.get("layout_version").and_then(Value::as_u64);
    if let Some(version) = version.filter(|&v| v > LAYOUT_VERSION) {
        return Err(ReadError::NewerLayout {
            path: path.to_owned(),
            version,
        });
    }
    if version.is_some_and(|v| v >= 2) {
        complete(&map).map_err(not_run)?;
    }
    let meta: Meta = serde_json::from_value(Value::Object(map))
        .map_err(|e| not_run(format!("its meta does not read: {e}")))?;
    for e in meta.entries() {
        if e.histogram_total().is_none() {
            return Err(ReadError::Corrupt {
                path: path.to_owned(),
                why: format!(
                    "the histogram_ns counts of {} {} add up past {} regions",
                    e.kind.name(),
                    e.label(),
                    u64::MAX
                ),
            });
        }
    }
    Ok(meta)
}

/// Whether `meta` has every key of layout 2 (its entries' too).
fn complete(meta: &Map<String, Value>) -> Result<(), String> {
    let version = "which every file of layout 2 or later has (renamed or dropped by hand?)";
    if let Some(k) = Meta::KEYS
        .iter()
        .find(|k| !meta.contains_key(**k) && !Meta::OPTIONAL_KEYS.contains(k))
    {
        return Err(format!("its meta lacks `{k}`, {version}"));
    }
    for (list, kind) in [
        ("phase_durations_seconds_total", Kind::Phase),
        ("function_durations_seconds_total", Kind::Function),
    ] {
        let Some(Value::Array(entries)) = meta.get(list) else {
            continue; // typing it says what it is instead
        };
        for e in entries {
            let Value::Object(e) = e else { continue };
            if let Some(k) = Entry::keys(kind).find(|k| !e.contains_key(*k)) {
                return Err(format!("an entry of meta.{list} lacks `{k}`, {version}"));
            }
        }
    }
    Ok(())
}

/// What the top level gave.
struct Parts {
    meta: Option<Meta>,
    /// Whether there was an `events` list.
    events: bool,
}

/// The top level of a run file: `meta` typed; `events` skipped; other
/// keys ignored.
struct Top<'a> {
    path: &'a Path,
    failed: &'a RefCell<Option<ReadError>>,
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Parts;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a run file: an object with `meta` and `events`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parts, A::Error> {
        let mut parts = Parts {
            meta: None,
            events: false,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "meta" => {
                    let value: Value = map.next_value()?;
                    parts.meta = Some(typed_meta(self.path, value).map_err(|e: ReadError| {
                        let message = e.to_string();
                        *self.failed.borrow_mut() = Some(e);
                        serde::de::Error::custom(message)
                    })?);
                }
                "events" => {
                    map.next_value_seed(SkipList)?;
                    parts.events = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(parts)
    }
}

/// Reads past the events list without keeping anything (anything but a
/// list is an error).
struct SkipList;

impl<'de> DeserializeSeed<'de> for SkipList {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SkipList {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the events list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
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
        assert!(RunFile::open(nested_file(dir.path(), MAX_DEPTH - 2)).is_ok());
        match RunFile::open(nested_file(dir.path(), MAX_DEPTH - 1)) {
            Err(e @ ReadError::TooDeep { .. }) => {
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
        let r = RunFile::open(&path);
        assert!(matches!(r, Err(ReadError::NotARunFile { .. })), "{r:?}");
    }

    #[test]
    fn events_iterate_wherever_the_list_is_and_whatever_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(
            &path,
            "{\"x\": 12, \"events\": [{\"event\": \"x\"}, 3\n, -4.5e1,\"s\", [1,[2]], true, null], \
             \"meta\": {\"run_id\": \"r\", \"started_at\": \"2026-11-25T07:10:23+00:00\"}, \"y\": 7}",
        )
        .unwrap();
        let run = RunFile::open(&path).unwrap();
        let seen: Vec<Value> = run
            .events()
            .unwrap()
            .map(|e| serde_json::to_value(e.unwrap()).unwrap())
            .collect();
        assert_eq!(
            seen,
            serde_json::json!([{"event": "x"}, 3, -45.0, "s", [1, [2]], true, null])
                .as_array()
                .unwrap()
                .clone()
        );
        // An empty list, after meta.
        std::fs::write(
            &path,
            r#"{"meta": {"run_id": "r", "started_at": "2026-11-25T07:10:23+00:00"}, "events": [ ]}"#,
        )
        .unwrap();
        assert_eq!(RunFile::open(&path).unwrap().events().unwrap().count(), 0);
    }

    #[test]
    fn a_file_spoiled_after_open_is_an_error_then_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        let good = r#"{"meta": {"run_id": "r", "started_at": "2026-11-25T07:10:23+00:00"}, "events": [{"event": "a"}, {"event": "b"}]}"#;
        std::fs::write(&path, good).unwrap();
        let run = RunFile::open(&path).unwrap();
        for (spoiled, what) in [
            (&good[..good.len() - 3], "truncated"),
            (&good.replace("}, {", "} {")[..], "not a list"),
            (&good.replace("\"b\"", "b")[..], "not json"),
        ] {
            std::fs::write(&path, spoiled).unwrap();
            let items: Vec<_> = run.events().unwrap().collect();
            assert_eq!(items.len(), 2, "{what}: {items:?}");
            assert!(items[0].is_ok(), "{what}");
            let e = items[1].as_ref().unwrap_err();
            let ok = match what {
                "truncated" => matches!(e, ReadError::Truncated { .. }),
                "not a list" => matches!(e, ReadError::NotARunFile { .. }),
                _ => {
                    matches!(e, &ReadError::NotJson { at, .. } if spoiled.as_bytes()[at as usize] == b'b')
                }
            };
            assert!(ok, "{what}: {e:?}");
        }
    }

    #[test]
    fn a_layout_2_file_without_a_key_is_refused_and_an_older_one_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        for (version, ok) in [(1, true), (2, false)] {
            std::fs::write(
                &path,
                format!(
                    r#"{{"meta": {{"run_id": "r", "started_at": "2026-11-25T07:10:23+00:00", "layout_version": {version}}}, "events": []}}"#
                ),
            )
            .unwrap();
            match RunFile::open(&path) {
                Ok(_) => assert!(ok, "layout {version}"),
                Err(e) => {
                    assert!(!ok, "layout {version}: {e}");
                    assert!(e.to_string().contains("lacks `ended_at`"), "{e}");
                }
            }
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
