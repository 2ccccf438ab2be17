//! A run file's events as an iterator: the file is scanned to its top-level
//! `events` list (whatever the order of its keys), then each element is
//! read with serde_json as the iterator is advanced. Only one event is
//! held at a time.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::de::{Deserialize, IgnoredAny};
use serde_json::Value;

use crate::read::{json_error, ReadError};
use crate::Event;

/// The events of a run file, in file order ([`RunFile::events`](crate::RunFile::events)).
///
/// Each item is read from the file as the iterator is advanced; after an
/// error (the file changed into one that does not read) it ends.
#[derive(Debug)]
pub struct Events {
    path: PathBuf,
    input: Tracked<BufReader<File>>,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Inside the list; `first` until its first element is read.
    Inside { first: bool },
    /// The list ended, or an error was returned.
    Done,
}

impl Events {
    pub(crate) fn open(path: &Path) -> Result<Events, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut events = Events {
            path: path.to_owned(),
            input: Tracked::new(BufReader::new(file)),
            state: State::Done,
        };
        events.find_list()?;
        events.state = State::Inside { first: true };
        Ok(events)
    }

    /// Moves past the top level's `{` and its keys up to `"events": [`.
    fn find_list(&mut self) -> Result<(), ReadError> {
        self.expect(b'{')?;
        loop {
            match self.next_byte()? {
                Some(b'"') => self.input.unread(b'"'),
                Some(b'}') => return Err(self.not_run("it has no `events` list")),
                _ => return Err(self.not_run("its top level is not an object")),
            }
            let key: String = self.value()?;
            self.expect(b':')?;
            if key == "events" {
                return self.expect(b'[');
            }
            self.value::<IgnoredAny>()?;
            match self.next_byte()? {
                Some(b',') => {}
                Some(b'}') => return Err(self.not_run("it has no `events` list")),
                _ => return Err(self.not_run("its top level is not an object")),
            }
        }
    }

    fn not_run(&self, why: &str) -> ReadError {
        ReadError::NotARunFile {
            path: self.path.clone(),
            why: why.to_owned(),
        }
    }

    /// The next byte that is not JSON whitespace, or `None` at the end.
    fn next_byte(&mut self) -> Result<Option<u8>, ReadError> {
        loop {
            match self.input.byte() {
                Ok(Some(b' ' | b'\n' | b'\r' | b'\t')) => {}
                Ok(b) => return Ok(b),
                Err(source) => {
                    return Err(ReadError::Read {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), ReadError> {
        match self.next_byte()? {
            Some(b) if b == want => Ok(()),
            None => Err(ReadError::Truncated {
                path: self.path.clone(),
                at: self.input.at,
            }),
            Some(b) => {
                let at = self.input.at - 1;
                let (line, column) = line_column(&self.path, at);
                Err(ReadError::NotJson {
                    path: self.path.clone(),
                    message: format!("expected `{}`, found `{}`", want as char, b.escape_ascii()),
                    at,
                    line,
                    column,
                })
            }
        }
    }

    /// One JSON value, read by serde_json from where the input is. A
    /// number is the one value serde_json reads a byte past (to see where
    /// it ends): that byte is given back.
    fn value<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, ReadError> {
        let start = self.next_byte()?;
        if let Some(b) = start {
            self.input.unread(b);
        }
        let start_at = self.input.at;
        let read = {
            let mut de = serde_json::Deserializer::from_reader(&mut self.input);
            T::deserialize(&mut de)
        };
        let value = read.map_err(|e| match json_error(&self.path, e) {
            // serde_json counted from where this value starts: say where
            // in the file it stopped.
            ReadError::NotJson { message, .. } => {
                let at = self.input.at.saturating_sub(1).max(start_at);
                let (line, column) = line_column(&self.path, at);
                ReadError::NotJson {
                    path: self.path.clone(),
                    message,
                    at,
                    line,
                    column,
                }
            }
            ReadError::TooDeep { path, .. } => ReadError::TooDeep {
                path,
                at: self.input.at,
            },
            other => other,
        })?;
        if matches!(start, Some(b'-' | b'0'..=b'9')) {
            if let Some(last) = self.input.last.filter(|b| !is_number_byte(*b)) {
                self.input.unread(last);
            }
        }
        Ok(value)
    }
}

fn is_number_byte(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
}

impl Iterator for Events {
    type Item = Result<Event, ReadError>;

    fn next(&mut self) -> Option<Result<Event, ReadError>> {
        let State::Inside { first } = self.state else {
            return None;
        };
        let step = (|| {
            let b = self.next_byte()?;
            match (first, b) {
                (_, Some(b']')) => return Ok(None),
                (true, Some(b)) => self.input.unread(b),
                (false, Some(b',')) => {}
                (_, None) => {
                    return Err(ReadError::Truncated {
                        path: self.path.clone(),
                        at: self.input.at,
                    })
                }
                (false, Some(_)) => return Err(self.not_run("its events list is not a list")),
            }
            self.value::<Value>().map(|v| Some(Event::from_value(v)))
        })();
        match step {
            Ok(Some(e)) => {
                self.state = State::Inside { first: false };
                Some(Ok(e))
            }
            Ok(None) => {
                self.state = State::Done;
                None
            }
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for Events {}

/// A reader that counts the bytes it gives, remembers the last and takes
/// one back (line and column are worked out only for an error).
#[derive(Debug)]
struct Tracked<R> {
    inner: R,
    /// Bytes given.
    at: u64,
    last: Option<u8>,
    back: Option<u8>,
}

impl<R: Read> Tracked<R> {
    fn new(inner: R) -> Tracked<R> {
        Tracked {
            inner,
            at: 0,
            last: None,
            back: None,
        }
    }

    fn byte(&mut self) -> std::io::Result<Option<u8>> {
        let mut b = [0u8];
        match self.read(&mut b)? {
            0 => Ok(None),
            _ => Ok(Some(b[0])),
        }
    }

    /// Takes back `b`, the byte given last.
    fn unread(&mut self, b: u8) {
        debug_assert!(self.back.is_none() && self.last == Some(b));
        self.back = Some(b);
        self.last = None;
        self.at -= 1;
    }
}

impl<R: Read> Read for Tracked<R> {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = match self.back.take() {
            Some(b) => {
                buf[0] = b;
                1
            }
            None => self.inner.read(buf)?,
        };
        if n > 0 {
            self.at += n as u64;
            self.last = Some(buf[n - 1]);
        }
        Ok(n)
    }
}

/// The line and column (1-based) of byte `at` of the file at `path`.
fn line_column(path: &Path, at: u64) -> (usize, usize) {
    let bytes = std::fs::read(path).unwrap_or_default();
    let before = &bytes[..(at as usize).min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, column)
}
