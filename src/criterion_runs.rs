//! The criterion adapter (feature `criterion`): a run around each benchmark,
//! so the phases its routine records land in one run file per benchmark id,
//! kept as criterion keeps its own results: the latest in `new/`, the one
//! before in `base/`.

use std::path::{Path, PathBuf};

use criterion::measurement::Measurement;
use criterion::{Bencher, Criterion};

use crate::error::{EndRunError, StartRunError};

/// Why a benchmark's run file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchRunError {
    /// The run could not start (a run already open, a log directory that
    /// cannot be written).
    #[error("could not start the benchmark's run: {0}")]
    StartRun(#[from] StartRunError),
    /// The run could not end.
    #[error("could not end the benchmark's run: {0}")]
    EndRun(#[from] EndRunError),
    /// The run file could not be put in its place.
    #[error("could not move {} to {}: {source}; check the directory is writable", from.display(), to.display())]
    Move {
        /// The file.
        from: PathBuf,
        /// Where it should go.
        to: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Records runmetrics phases in criterion benchmarks: [`bench_function`]
/// runs criterion's `bench_function` inside a run of the global recorder and
/// writes the run to `<dir>/new/<id>.json`, moving the previous one to
/// `<dir>/base/<id>.json`. Then
/// `runmetrics compare --each <dir>/base <dir>/new` compares two
/// `cargo bench` runs phase by phase.
///
/// The run spans every iteration criterion makes (warm-up included), so
/// counts depend on criterion's sampling; compare p50, p99 and mean, not
/// totals.
///
/// ```no_run
/// use criterion::{criterion_group, criterion_main, Criterion};
///
/// fn bench(c: &mut Criterion) {
///     runmetrics::CriterionRuns::new()
///         .bench_function(c, "infer", |b| {
///             b.iter(|| {
///                 let _t = runmetrics::phase!("forward", "model");
///                 // ...
///             })
///         })
///         .expect("runmetrics run file");
/// }
/// criterion_group!(benches, bench);
/// criterion_main!(benches);
/// ```
///
/// [`bench_function`]: CriterionRuns::bench_function
#[derive(Clone, Debug)]
pub struct CriterionRuns {
    dir: PathBuf,
}

impl Default for CriterionRuns {
    fn default() -> CriterionRuns {
        CriterionRuns::new()
    }
}

impl CriterionRuns {
    /// Run files under `$CARGO_TARGET_DIR/runmetrics` (`target/runmetrics`
    /// when unset), next to criterion's own `target/criterion`.
    pub fn new() -> CriterionRuns {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from("target"), PathBuf::from);
        CriterionRuns::in_dir(target.join("runmetrics"))
    }

    /// Run files under `dir` (`dir/new/`, `dir/base/`).
    pub fn in_dir(dir: impl Into<PathBuf>) -> CriterionRuns {
        CriterionRuns { dir: dir.into() }
    }

    /// Where the latest run of each benchmark goes.
    pub fn new_dir(&self) -> PathBuf {
        self.dir.join("new")
    }

    /// Where the run before it goes.
    pub fn base_dir(&self) -> PathBuf {
        self.dir.join("base")
    }

    /// Runs `c.bench_function(id, f)` inside a run and returns the run
    /// file's path (`<dir>/new/<id>.json`; characters other than letters,
    /// digits, `-`, `_` and `.` become `_`). A benchmark that recorded
    /// nothing (filtered out on criterion's command line) leaves the files
    /// as they were and returns `Ok(None)`.
    pub fn bench_function<M: Measurement + 'static, F>(
        &self,
        c: &mut Criterion<M>,
        id: &str,
        f: F,
    ) -> Result<Option<PathBuf>, BenchRunError>
    where
        F: FnMut(&mut Bencher<'_, M>),
    {
        let scratch = self.dir.join(".running");
        crate::start_run(&scratch)?;
        c.bench_function(id, f);
        let written = crate::end_run(serde_json::json!({ "benchmark_id": id }))?;
        if recorded_nothing(&written) {
            let _ = std::fs::remove_file(&written);
            return Ok(None);
        }
        let name = format!("{}.json", file_stem(id));
        let new = self.new_dir().join(&name);
        if new.exists() {
            place(&new, &self.base_dir().join(&name))?;
        }
        place(&written, &new)?;
        Ok(Some(new))
    }
}

/// Whether the run file at `path` holds no region and no count. Reads only
/// `meta.records_issued`: the events stream past unkept.
fn recorded_nothing(path: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct File {
        meta: Meta,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        records_issued: u64,
    }
    std::fs::File::open(path)
        .ok()
        .and_then(|f| serde_json::from_reader::<_, File>(std::io::BufReader::new(f)).ok())
        .is_some_and(|f| f.meta.records_issued == 0)
}

fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Moves `from` to `to`, making `to`'s directory.
fn place(from: &Path, to: &Path) -> Result<(), BenchRunError> {
    let moved = (|| {
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::rename(from, to)
    })();
    moved.map_err(|source| BenchRunError::Move {
        from: from.to_owned(),
        to: to.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_file_names() {
        assert_eq!(file_stem("infer/batch 8"), "infer_batch_8");
        assert_eq!(file_stem("a-b_c.d"), "a-b_c.d");
    }
}
