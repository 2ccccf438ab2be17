//! Reading run files: `runmetrics-format`'s reader and types under the
//! names the commands use. The CLI keeps no schema of its own.

use std::path::Path;

pub use runmetrics_format::{
    histogram_total, Bucket, Entry, Event, Kind, ProcessSample, ReadError as LoadError,
    RunFile as Run, Timestamp,
};

/// Reads and checks the run file at `path`, streaming past its events
/// (`show` and `compare` need only `meta`): a run of millions of events
/// costs no more memory than one of ten.
pub fn load(path: &Path) -> Result<Run, LoadError> {
    Run::open(path)
}

/// `module/name`, or the name alone when the module is empty.
pub fn label(module: &str, name: &str) -> String {
    if module.is_empty() {
        name.to_owned()
    } else {
        format!("{module}/{name}")
    }
}

#[cfg(test)]
mod proptests;
