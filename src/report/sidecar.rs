//! The events sidecar, `<log_dir>/<run_id>.events.jsonl`: the open run's kept
//! events, one JSON object per line, each ending with its `offset_ns` (the
//! sort key). The collector appends them as they come, nearly in time order;
//! the file is a few sorted stretches ("runs"), and every run file lists the
//! events by merging those stretches, reading each through a small buffer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::layout::EventText;
use crate::collector::sink::Event;

/// Past this many sorted stretches, the file is rewritten as one.
const MAX_RUNS: usize = 32;
const READ_BUFFER: usize = 16 * 1024;
const WRITE_BUFFER: usize = 64 * 1024;

pub(crate) struct Sidecar {
    path: PathBuf,
    /// Opened (created) at the first append.
    file: Option<File>,
    /// Bytes of complete lines: a failed append is cut back to this.
    len: u64,
    /// Where each sorted stretch starts (the first at 0, also while the
    /// file is empty).
    runs: Vec<u64>,
    /// The last line's `offset_ns`: an earlier line starts a new stretch.
    last_ns: u64,
    lines: u64,
    buf: Vec<u8>,
}

impl Sidecar {
    /// The sidecar of the run file at `run_path`.
    pub(crate) fn path_for(run_path: &Path) -> PathBuf {
        crate::run_id::sidecar_path(run_path)
    }

    /// The file a compaction of the sidecar at `path` writes before it
    /// takes the sidecar's place; a kill in between leaves it behind.
    pub(crate) fn compaction_path(path: &Path) -> PathBuf {
        path.with_extension("jsonl.tmp")
    }

    pub(crate) fn new(run_path: &Path) -> Sidecar {
        Sidecar {
            path: Sidecar::path_for(run_path),
            file: None,
            len: 0,
            runs: vec![0],
            last_ns: 0,
            lines: 0,
            buf: Vec::new(),
        }
    }

    /// The file's name, as a snapshot names it.
    pub(crate) fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Events in the file.
    pub(crate) fn lines(&self) -> u64 {
        self.lines
    }

    /// Appends `events`, sorted by time. On failure none of them is in the
    /// file (a partial write is cut off).
    pub(crate) fn append(&mut self, events: &[Event], text: &EventText<'_>) -> std::io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            empty => empty.insert(
                File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&self.path)?,
            ),
        };
        let mut runs = Vec::new();
        let mut last = self.last_ns;
        let mut written = 0u64;
        self.buf.clear();
        let result = (|| {
            for e in events {
                let at = e.at_ns();
                if at < last {
                    runs.push(self.len + written + self.buf.len() as u64);
                }
                last = at;
                text.write_line(&mut self.buf, e)?;
                if self.buf.len() >= WRITE_BUFFER {
                    write_all_at(file, &self.buf, self.len + written)?;
                    written += self.buf.len() as u64;
                    self.buf.clear();
                }
            }
            write_all_at(file, &self.buf, self.len + written)?;
            written += self.buf.len() as u64;
            Ok(())
        })();
        if let Err(e) = result {
            // Best effort: what lies past `len` is never read, and the next
            // append writes over it.
            let _ = file.set_len(self.len);
            return Err(e);
        }
        self.len += written;
        self.runs.extend(runs);
        self.last_ns = last;
        self.lines += events.len() as u64;
        if self.runs.len() > MAX_RUNS {
            // Best effort: the stretches stay readable if this fails.
            let _ = self.compact();
        }
        Ok(())
    }

    /// Rewrites the file as one sorted stretch.
    fn compact(&mut self) -> std::io::Result<()> {
        let tmp = Sidecar::compaction_path(&self.path);
        let result = (|| {
            let mut out = std::io::BufWriter::new(File::create(&tmp)?);
            let mut merge = self.merge()?;
            while let Some((_, line)) = merge.next_line()? {
                out.write_all(line)?;
            }
            drop(merge);
            out.into_inner().map_err(|e| e.into_error())?;
            std::fs::rename(&tmp, &self.path)?;
            File::options().read(true).write(true).open(&self.path)
        })();
        match result {
            Ok(file) => {
                self.file = Some(file);
                self.runs = vec![0];
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// The file's lines in time order (ties in the order they were written).
    pub(crate) fn merge(&self) -> std::io::Result<Merge<'_>> {
        let mut merge = Merge {
            stretches: Vec::new(),
            heap: BinaryHeap::new(),
            current: None,
        };
        let Some(file) = &self.file else {
            return Ok(merge);
        };
        let ends = self.runs.iter().skip(1).copied().chain([self.len]);
        for (i, (&start, end)) in self.runs.iter().zip(ends).enumerate() {
            let span = Span {
                file,
                pos: start,
                end,
            };
            merge.stretches.push(Stretch {
                reader: BufReader::with_capacity(READ_BUFFER, span),
                line: Vec::new(),
            });
            merge.advance(i)?;
        }
        Ok(merge)
    }

    /// Removes the file: the run's final file lists every event.
    pub(crate) fn remove(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A merge of the sidecar's sorted stretches.
pub(crate) struct Merge<'a> {
    stretches: Vec<Stretch<'a>>,
    /// (time, stretch) of each stretch's next line.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// The stretch whose line was handed out last, to read its next.
    current: Option<usize>,
}

impl Merge<'_> {
    /// The time of the next line, if any.
    pub(crate) fn peek_ns(&mut self) -> std::io::Result<Option<u64>> {
        if let Some(i) = self.current.take() {
            self.advance(i)?;
        }
        Ok(self.heap.peek().map(|Reverse((at, _))| *at))
    }

    /// The next line in time order (with its newline) and its time.
    pub(crate) fn next_line(&mut self) -> std::io::Result<Option<(u64, &[u8])>> {
        self.peek_ns()?;
        let Some(Reverse((at, i))) = self.heap.pop() else {
            return Ok(None);
        };
        self.current = Some(i);
        Ok(Some((at, &self.stretches[i].line)))
    }

    fn advance(&mut self, i: usize) -> std::io::Result<()> {
        let Stretch { reader, line } = &mut self.stretches[i];
        line.clear();
        if reader.read_until(b'\n', line)? == 0 {
            return Ok(());
        }
        let at = line_ns(line).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a line of the events file does not end with its offset_ns: {}",
                    String::from_utf8_lossy(&line[..line.len().min(200)])
                ),
            )
        })?;
        self.heap.push(Reverse((at, i)));
        Ok(())
    }
}

/// One sorted stretch being merged: its reader and its next line.
struct Stretch<'a> {
    reader: BufReader<Span<'a>>,
    line: Vec<u8>,
}

/// The `offset_ns` a line ends with: `...,"offset_ns":123}\n`.
fn line_ns(line: &[u8]) -> Option<u64> {
    let body = line
        .strip_suffix(b"\n")
        .unwrap_or(line)
        .strip_suffix(b"}")?;
    let colon = body.iter().rposition(|&c| c == b':')?;
    let digits = &body[colon + 1..];
    if digits.is_empty() || !body[..colon].ends_with(b"\"offset_ns\"") {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(c - b'0')))
            .flatten()
    })
}

/// Writes `buf` at `offset`, whatever the handle's cursor.
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    return std::os::unix::fs::FileExt::write_all_at(file, buf, offset);
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_write(
                file,
                &buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, buf, offset);
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// One stretch of the file, read at its own position (the handle's cursor
/// is shared by the other stretches).
struct Span<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Span<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.end - self.pos).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        #[cfg(unix)]
        let got = std::os::unix::fs::FileExt::read_at(self.file, &mut buf[..n], self.pos)?;
        #[cfg(windows)]
        let got = std::os::windows::fs::FileExt::seek_read(self.file, &mut buf[..n], self.pos)?;
        #[cfg(not(any(unix, windows)))]
        let got: usize = return Err(std::io::ErrorKind::Unsupported.into());
        self.pos += got as u64;
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ns: u64) -> Event {
        Event::Sample {
            at_ns,
            cpu_percent: 1.0,
            rss_bytes: 1,
            window_seconds: 1.0,
        }
    }

    fn merged(sidecar: &Sidecar) -> Vec<u64> {
        let mut merge = sidecar.merge().unwrap();
        let mut out = Vec::new();
        while let Some((at, line)) = merge.next_line().unwrap() {
            assert_eq!(line_ns(line), Some(at));
            out.push(at);
        }
        out
    }

    #[test]
    fn late_events_start_a_stretch_and_the_merge_puts_them_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let text = EventText::new(&[], chrono::Local::now().fixed_offset());
        let mut sidecar = Sidecar::new(&dir.path().join("r.json"));
        assert_eq!(merged(&sidecar), Vec::<u64>::new(), "no file yet");
        // Each batch is sorted; every batch but the first has a late event.
        let mut all: Vec<u64> = Vec::new();
        for batch in 0..MAX_RUNS as u64 + 5 {
            let mut events: Vec<u64> = (0..10).map(|i| batch * 100 + i * 10).collect();
            if batch > 0 {
                events.insert(0, batch * 100 - 55);
            }
            all.extend(&events);
            let events: Vec<Event> = events.into_iter().map(sample).collect();
            sidecar.append(&events, &text).unwrap();
            let stretches = sidecar.runs.len();
            assert!(
                stretches <= MAX_RUNS,
                "compacted past {MAX_RUNS}: {stretches}"
            );
        }
        all.sort_unstable();
        assert_eq!(merged(&sidecar), all);
        assert_eq!(sidecar.lines(), all.len() as u64);
        let on_disk =
            std::fs::read_to_string(Sidecar::path_for(&dir.path().join("r.json"))).unwrap();
        assert_eq!(on_disk.lines().count(), all.len());
        sidecar.remove();
        assert!(!Sidecar::path_for(&dir.path().join("r.json")).exists());
    }

    #[test]
    fn a_line_ends_with_its_time() {
        assert_eq!(line_ns(b"{\"a\":1,\"offset_ns\":42}\n"), Some(42));
        assert_eq!(line_ns(b"{\"offset_ns\":0}"), Some(0));
        for bad in [
            &b"{\"a\":1}\n"[..],
            b"{\"offset_ns\":}\n",
            b"{\"offset_ns\":4x}\n",
            b"{\"offset_ns\":99999999999999999999}\n",
            b"",
        ] {
            assert_eq!(line_ns(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
