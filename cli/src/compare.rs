//! `runmetrics compare BASE NEW`: per phase and function, the change in
//! p50, p99, mean and total, each marked improved, regressed or unchanged
//! against a noise threshold, like critcmp. Each side is one run file or
//! several (a directory, or a glob); several runs' histograms are merged,
//! and with at least two runs a side the run-to-run spread decides whether
//! a change is more than noise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::format::{change, seconds, Table};
use crate::run_file::{self, Entry, Kind, LoadError, Run};

/// The statistic a verdict is taken on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Metric {
    P50,
    P90,
    P99,
    Mean,
    Total,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P99 => "p99",
            Metric::Mean => "mean",
            Metric::Total => "total",
        }
    }

    /// The metric's relative step in a run file: quantiles are read off
    /// buckets 1/128 to 1/64 of their value wide; the mean and the total
    /// are exact.
    fn resolution(self) -> f64 {
        match self {
            Metric::P50 | Metric::P90 | Metric::P99 => 1.0 / 64.0,
            Metric::Mean | Metric::Total => 0.0,
        }
    }

    fn of(self, s: &Stats) -> Option<f64> {
        match self {
            Metric::P50 => s.p50,
            Metric::P90 => s.p90,
            Metric::P99 => s.p99,
            Metric::Mean => s.mean,
            Metric::Total => Some(s.total),
        }
    }
}

/// Why the sides could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{0} names no run file (give a run file, a directory of them, or a quoted glob such as 'runs/*.json')")]
    NoRuns(String),
    #[error("cannot list {}: {source}", path.display())]
    ListDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{pattern:?} is not a valid glob: {message}")]
    Glob { pattern: String, message: String },
    #[error(
        "--each compares two directories (or two quoted globs of directories), and {0} names none"
    )]
    NotADirectory(String),
    #[error("{0} and {1} have no run file name in common: nothing to compare pairwise")]
    NoPairs(String, String),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The run files a side names: a file, every `*.json` in a directory, or
/// what a glob matches (sorted).
pub fn expand(arg: &str) -> Result<Vec<PathBuf>, CompareError> {
    let path = Path::new(arg);
    let mut paths: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|source| CompareError::ListDir {
                path: path.to_owned(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect()
    } else if arg.contains(['*', '?', '[']) {
        glob::glob(arg)
            .map_err(|e| CompareError::Glob {
                pattern: arg.to_owned(),
                message: e.to_string(),
            })?
            .filter_map(Result::ok)
            .collect()
    } else {
        vec![path.to_owned()]
    };
    paths.sort();
    if paths.is_empty() {
        return Err(CompareError::NoRuns(arg.to_owned()));
    }
    Ok(paths)
}

/// One side's view of one phase or function, over its runs.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub count: u64,
    pub total: f64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    /// The metric's value in each run that has the entry.
    per_run: Vec<f64>,
}

impl From<&Entry> for Stats {
    /// One run's own figures.
    fn from(e: &Entry) -> Stats {
        Stats {
            count: e.stats.count.unwrap_or(0),
            total: e.stats.duration_seconds_total,
            mean: e.stats.mean_seconds,
            p50: e.stats.p50_seconds,
            p90: e.stats.p90_seconds,
            p99: e.stats.p99_seconds,
            per_run: Vec::new(),
        }
    }
}

/// Kind, module, name.
pub type Key = (Kind, String, String);

/// Every entry of a side's runs, merged. The sums are checked: counts that
/// add up past `u64::MAX` (or totals past `f64::MAX`) cannot be true, and
/// the file whose entry took the sum over is reported corrupt.
fn merge(runs: &[Run], metric: Metric) -> Result<BTreeMap<Key, Stats>, LoadError> {
    let mut by_key: BTreeMap<Key, Vec<(&Path, &Entry)>> = BTreeMap::new();
    for run in runs {
        for e in run.entries() {
            by_key
                .entry((e.kind, e.module.clone(), e.name.clone()))
                .or_default()
                .push((&run.path, e));
        }
    }
    by_key
        .into_iter()
        .map(|(key, entries)| {
            let per_run = entries
                .iter()
                .filter_map(|(_, e)| metric.of(&Stats::from(*e)))
                .collect();
            let stats = if let [(_, one)] = entries[..] {
                // One run: its own figures, finer than the file's histogram.
                Stats {
                    per_run,
                    ..Stats::from(one)
                }
            } else {
                Stats {
                    per_run,
                    ..Stats::from(&crate::fleet::merge_entry(&entries)?)
                }
            };
            Ok((key, stats))
        })
        .collect()
}

/// A merged histogram (by lower bound: count and the widest width there)
/// as buckets, ascending.
#[cfg(test)]
fn buckets(hist: &BTreeMap<u64, (u64, u64)>) -> Vec<run_file::Bucket> {
    hist.iter()
        .map(|(&lower_ns, &(count, width_ns))| run_file::Bucket {
            lower_ns,
            count,
            width_ns: width_ns.max(1),
        })
        .collect()
}

/// The value at quantile `q` of a merged run-file histogram, in seconds, by
/// the format's one rule (`runmetrics_format::quantile_seconds`), without
/// extremes to clamp to.
#[cfg(test)]
fn quantile(hist: &BTreeMap<u64, (u64, u64)>, q: f64) -> Option<f64> {
    runmetrics_format::quantile_seconds(&buckets(hist), q, None, None)
}

/// What happened to one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Improved,
    Regressed,
    Unchanged,
    /// Past the threshold, but within the runs' spread.
    Noise,
    New,
    Gone,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Regressed => "regressed",
            Verdict::Unchanged => "unchanged",
            Verdict::Noise => "within noise",
            Verdict::New => "new",
            Verdict::Gone => "gone",
        }
    }
}

/// The settings of one comparison.
pub struct Options {
    pub metric: Metric,
    /// The relative change below which nothing changed (0.05 for 5 %).
    pub threshold: f64,
}

/// One phase's or function's comparison.
pub struct Row {
    pub key: Key,
    pub base: Option<Stats>,
    pub new: Option<Stats>,
    /// The relative change of the metric, when both sides have it.
    pub change: Option<f64>,
    pub verdict: Verdict,
    /// Whether the metric's change is within the runs' spread (Welch's
    /// t-test at 99 %); `None` with fewer than two runs a side, or a side
    /// without the entry.
    pub within_noise: Option<bool>,
}

impl Row {
    pub fn label(&self) -> String {
        run_file::label(&self.key.1, &self.key.2)
    }
}

/// The result of a comparison.
pub struct Comparison {
    base: Vec<PathBuf>,
    new: Vec<PathBuf>,
    metric: Metric,
    threshold: f64,
    rows: Vec<Row>,
}

impl Comparison {
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn regressed(&self) -> usize {
        self.count(Verdict::Regressed)
    }

    pub fn metric_name(&self) -> &'static str {
        self.metric.name()
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Whether both sides have two runs or more (a spread to judge by).
    pub fn has_spread(&self) -> bool {
        self.base.len() >= 2 && self.new.len() >= 2
    }

    /// How many runs each side merged: (base, new).
    pub fn runs(&self) -> (usize, usize) {
        (self.base.len(), self.new.len())
    }

    fn count(&self, v: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == v).count()
    }
}

/// Whether `new` differs from `base` beyond the runs' spread: Welch's
/// t-test on the runs as samples, two-sided at 99 % (the critical value
/// for the Welch–Satterthwaite degrees of freedom, so three runs a side
/// need a difference of about 4.6 standard errors, not 2). `resolution` is
/// the metric's relative quantization (a quantile read off the file's
/// buckets moves in steps of up to 1/64 of its value): each run's variance
/// is at least that of a uniform rounding error, so runs that all read the
/// same bucket do not make a one-bucket step look certain. With fewer than
/// two runs a side there is no spread to judge by: any change counts.
fn beyond_noise(base: &[f64], new: &[f64], resolution: f64) -> bool {
    if base.len() < 2 || new.len() < 2 {
        return true;
    }
    // Scaled to at most 1, so that no sum or square of a file's figures
    // (each finite, up to f64::MAX) overflows; the verdict does not change.
    let scale = base.iter().chain(new).fold(0.0, |m: f64, x| m.max(x.abs()));
    let scale = if scale > 0.0 { scale } else { 1.0 };
    // Mean, and the variance of the mean with the rounding floor.
    let stats = |v: &[f64]| {
        let n = v.len() as f64;
        let mean = v.iter().map(|x| x / scale).sum::<f64>() / n;
        let var = v.iter().map(|x| (x / scale - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let floor = (mean * resolution).powi(2) / 12.0;
        (mean, var.max(floor) / n, n - 1.0)
    };
    let ((mb, sb, db), (mn, sn, dn)) = (stats(base), stats(new));
    let se2 = sb + sn;
    if se2 == 0.0 {
        // Every run of both sides exactly alike (and the metric exact).
        return mn != mb;
    }
    let df = se2 * se2 / (sb * sb / db + sn * sn / dn);
    (mn - mb).abs() > t_99(df) * se2.sqrt()
}

/// The two-sided 99 % critical value of Student's t with `df` degrees of
/// freedom (rounded down to a tabled one: the stricter side).
fn t_99(df: f64) -> f64 {
    const TABLE: [f64; 30] = [
        63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012,
        2.977, 2.947, 2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797, 2.787, 2.779,
        2.771, 2.763, 2.756, 2.750,
    ];
    match df.floor() {
        d if d.is_nan() || d < 1.0 => TABLE[0],
        d if d <= 30.0 => TABLE[d as usize - 1],
        d if d < 40.0 => 2.750,
        d if d < 60.0 => 2.704,
        d if d < 120.0 => 2.660,
        _ => 2.617,
    }
}

/// Compares the sides; an error names a file whose figures, merged with
/// the other runs of its side, cannot be true.
pub fn compare(base: &[Run], new: &[Run], options: &Options) -> Result<Comparison, LoadError> {
    let metric = options.metric;
    let mut b = merge(base, metric)?;
    let mut n = merge(new, metric)?;
    let keys: std::collections::BTreeSet<Key> = b.keys().chain(n.keys()).cloned().collect();
    let rows = keys
        .into_iter()
        .map(|key| {
            let base = b.remove(&key);
            let new = n.remove(&key);
            let change = match (
                base.as_ref().and_then(|s| metric.of(s)),
                new.as_ref().and_then(|s| metric.of(s)),
            ) {
                (Some(x), Some(y)) if x > 0.0 => Some((y - x) / x),
                _ => None,
            };
            let verdict = match (&base, &new, change) {
                (None, _, _) => Verdict::New,
                (_, None, _) => Verdict::Gone,
                (Some(_), Some(_), None) => Verdict::Unchanged,
                (Some(_), Some(_), Some(rel)) if rel.abs() <= options.threshold => {
                    Verdict::Unchanged
                }
                (Some(bs), Some(ns), Some(_))
                    if !beyond_noise(&bs.per_run, &ns.per_run, metric.resolution()) =>
                {
                    Verdict::Noise
                }
                (Some(_), Some(_), Some(rel)) if rel > 0.0 => Verdict::Regressed,
                (Some(_), Some(_), Some(_)) => Verdict::Improved,
            };
            let within_noise = match (&base, &new) {
                (Some(bs), Some(ns)) if bs.per_run.len() >= 2 && ns.per_run.len() >= 2 => {
                    Some(!beyond_noise(&bs.per_run, &ns.per_run, metric.resolution()))
                }
                _ => None,
            };
            Row {
                key,
                base,
                new,
                change,
                verdict,
                within_noise,
            }
        })
        .collect();
    Ok(Comparison {
        base: base.iter().map(|r| r.path.clone()).collect(),
        new: new.iter().map(|r| r.path.clone()).collect(),
        metric,
        threshold: options.threshold,
        rows,
    })
}

fn side(paths: &[PathBuf]) -> String {
    match paths {
        [one] => one.display().to_string(),
        many => format!("{} runs ({} ...)", many.len(), many[0].display()),
    }
}

/// `base → new  +x.x %` for one statistic.
fn cell(base: Option<f64>, new: Option<f64>) -> String {
    match (base, new) {
        (Some(b), Some(n)) if b > 0.0 => {
            format!("{} → {}  {}", seconds(b), seconds(n), change((n - b) / b))
        }
        (Some(b), Some(n)) => format!("{} → {}", seconds(b), seconds(n)),
        (Some(b), None) => seconds(b),
        (None, Some(n)) => seconds(n),
        (None, None) => "-".to_owned(),
    }
}

pub fn text(c: &Comparison) -> String {
    let mut out = format!(
        "base  {}\nnew   {}\nverdicts on {} with a {:.1} % threshold{}\n",
        side(&c.base),
        side(&c.new),
        c.metric.name(),
        c.threshold * 100.0,
        if c.base.len() >= 2 && c.new.len() >= 2 {
            ", and the runs' spread"
        } else {
            ""
        }
    );
    for kind in [Kind::Phase, Kind::Function] {
        let mut table =
            Table::new(&[kind.name(), "p50", "p99", "mean", "total", "verdict"]).left_aligned(&[5]);
        for r in c.rows.iter().filter(|r| r.key.0 == kind) {
            let get = |f: fn(&Stats) -> Option<f64>| {
                cell(r.base.as_ref().and_then(f), r.new.as_ref().and_then(f))
            };
            table.row(vec![
                r.label(),
                get(|s| s.p50),
                get(|s| s.p99),
                get(|s| s.mean),
                get(|s| Some(s.total)),
                r.verdict.name().to_owned(),
            ]);
        }
        if !table.is_empty() {
            out.push('\n');
            table.render(&mut out);
        }
    }
    out.push_str(&format!(
        "\n{} regressed, {} improved, {} unchanged, {} within noise, {} new, {} gone\n",
        c.regressed(),
        c.count(Verdict::Improved),
        c.count(Verdict::Unchanged),
        c.count(Verdict::Noise),
        c.count(Verdict::New),
        c.count(Verdict::Gone),
    ));
    out
}

pub fn json(c: &Comparison) -> Value {
    let stats = |s: &Option<Stats>| {
        s.as_ref().map(|s| {
            json!({
                "count": s.count, "total_seconds": s.total, "mean_seconds": s.mean,
                "p50_seconds": s.p50, "p90_seconds": s.p90, "p99_seconds": s.p99,
                "runs": s.per_run.len(),
            })
        })
    };
    let rows: Vec<Value> = c
        .rows
        .iter()
        .map(|r| {
            json!({
                "kind": r.key.0.name(), "module": r.key.1, "name": r.key.2,
                "base": stats(&r.base), "new": stats(&r.new),
                "change": r.change, "verdict": r.verdict.name(),
            })
        })
        .collect();
    json!({
        "base": c.base, "new": c.new, "metric": c.metric.name(), "threshold": c.threshold,
        "rows": rows, "regressed": c.regressed(),
    })
}

/// Two directories compared file by file (`--each`).
pub struct Pairs {
    compared: Vec<(String, Comparison)>,
    only_base: Vec<String>,
    only_new: Vec<String>,
}

impl Pairs {
    pub fn compared(&self) -> &[(String, Comparison)] {
        &self.compared
    }

    pub fn only_base(&self) -> &[String] {
        &self.only_base
    }

    pub fn only_new(&self) -> &[String] {
        &self.only_new
    }

    pub fn regressed(&self) -> usize {
        self.compared.iter().map(|(_, c)| c.regressed()).sum()
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for (name, c) in &self.compared {
            out.push_str(&format!("== {name}\n"));
            out.push_str(&text(c));
            out.push('\n');
        }
        for (side, names) in [("base", &self.only_base), ("new", &self.only_new)] {
            if !names.is_empty() {
                out.push_str(&format!("only in {side}: {}\n", names.join(", ")));
            }
        }
        out.push_str(&format!(
            "{} files compared, {} regressed in all\n",
            self.compared.len(),
            self.regressed()
        ));
        out
    }

    pub fn json(&self) -> Value {
        let compared: Vec<Value> = self
            .compared
            .iter()
            .map(|(name, c)| json!({"file": name, "comparison": json(c)}))
            .collect();
        json!({
            "compared": compared, "only_base": self.only_base, "only_new": self.only_new,
            "regressed": self.regressed(),
        })
    }
}

/// The directories a side of `--each` names: one, or every directory a
/// quoted glob matches ('runs/base-*': several runs a side).
fn dirs(arg: &str) -> Result<Vec<PathBuf>, CompareError> {
    let dirs: Vec<PathBuf> = if Path::new(arg).is_dir() {
        vec![PathBuf::from(arg)]
    } else if arg.contains(['*', '?', '[']) {
        let mut d: Vec<PathBuf> = glob::glob(arg)
            .map_err(|e| CompareError::Glob {
                pattern: arg.to_owned(),
                message: e.to_string(),
            })?
            .filter_map(Result::ok)
            .filter(|p| p.is_dir())
            .collect();
        d.sort();
        d
    } else {
        Vec::new()
    };
    if dirs.is_empty() {
        return Err(CompareError::NotADirectory(arg.to_owned()));
    }
    Ok(dirs)
}

/// The run files of a side of `--each` by name: each name's files, one
/// per directory that has it.
fn by_name(arg: &str) -> Result<BTreeMap<String, Vec<PathBuf>>, CompareError> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for dir in dirs(arg)? {
        let Some(dir) = dir.to_str() else { continue };
        let files = match expand(dir) {
            Err(CompareError::NoRuns(_)) => continue,
            other => other?,
        };
        for f in files {
            if let Some(name) = f.file_name().map(|n| n.to_string_lossy().into_owned()) {
                out.entry(name).or_default().push(f);
            }
        }
    }
    Ok(out)
}

/// Compares the files of directories `base` and `new` that share a name;
/// a side that is a glob of several directories has several runs of each.
pub fn each(base: &str, new: &str, options: &Options) -> Result<Pairs, CompareError> {
    let (b, n) = (by_name(base)?, by_name(new)?);
    let mut compared = Vec::new();
    for (name, base_files) in &b {
        let Some(new_files) = n.get(name) else {
            continue;
        };
        let load = |files: &[PathBuf]| -> Result<Vec<Run>, CompareError> {
            files
                .iter()
                .map(|f| run_file::load(f).map_err(CompareError::from))
                .collect()
        };
        compared.push((
            name.clone(),
            compare(&load(base_files)?, &load(new_files)?, options)?,
        ));
    }
    if compared.is_empty() {
        return Err(CompareError::NoPairs(base.to_owned(), new.to_owned()));
    }
    Ok(Pairs {
        compared,
        only_base: b.keys().filter(|k| !n.contains_key(*k)).cloned().collect(),
        only_new: n.keys().filter(|k| !b.contains_key(*k)).cloned().collect(),
    })
}

/// Reads every run file of a side.
pub fn load_side(arg: &str) -> Result<Vec<Run>, CompareError> {
    expand(arg)?
        .iter()
        .map(|p| run_file::load(p).map_err(CompareError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_merged_histogram() {
        // 999 424 ns is the layout-1 bucket of 1 ms: 8 192 ns wide.
        let hist: BTreeMap<u64, (u64, u64)> = [(100, (50, 1)), (999_424, (50, 8_192))]
            .into_iter()
            .collect();
        assert_eq!(quantile(&hist, 0.5), Some(100e-9));
        let p99 = quantile(&hist, 0.99).unwrap();
        assert!((p99 - 1_003_519.5e-9).abs() < 1e-12, "{p99}");
        assert_eq!(quantile(&BTreeMap::new(), 0.5), None);
    }

    #[test]
    fn noise_is_welchs_t_test_at_99_percent() {
        let q = Metric::P50.resolution();
        assert!(
            beyond_noise(&[1.0], &[1.01], q),
            "one run: no spread to judge by"
        );
        assert!(!beyond_noise(&[1.0, 1.2, 0.8], &[1.1, 1.3, 0.9], q));
        assert!(beyond_noise(&[1.0, 1.01, 0.99], &[1.2, 1.21, 1.19], q));
        // 3 runs a side (df 4; the standard error of the difference is
        // 0.082): 3.1 standard errors are past twice it but within
        // t(4, 99 %) = 4.6 of them; 4.9 are not.
        assert!(!beyond_noise(&[1.0, 1.1, 0.9], &[1.25, 1.35, 1.15], 0.0));
        assert!(beyond_noise(&[1.0, 1.1, 0.9], &[1.4, 1.5, 1.3], 0.0));
        // Many runs: the critical value nears the normal's 2.58.
        let base: Vec<f64> = (0..200)
            .map(|i| 1.0 + 0.1 * ((i % 2) as f64 - 0.5))
            .collect();
        let shifted = |d: f64| base.iter().map(|x| x + d).collect::<Vec<_>>();
        // The standard error of the difference is 0.05 * sqrt(2 / 200) = 0.005.
        assert!(!beyond_noise(&base, &shifted(0.012), 0.0));
        assert!(beyond_noise(&base, &shifted(0.014), 0.0));
        // Runs that all read one bucket: a one-bucket step (1/64) is
        // within the rounding, three buckets are not.
        assert!(!beyond_noise(&[1.0; 3], &[1.0 + 1.0 / 64.0; 3], q));
        assert!(beyond_noise(&[1.0; 3], &[1.0 + 3.0 / 64.0; 3], q));
        // An exact metric whose runs agree exactly: any change counts.
        assert!(beyond_noise(&[2.0; 3], &[2.0 + 1e-9; 3], 0.0));
        assert!(!beyond_noise(&[2.0; 3], &[2.0; 3], 0.0));
        // Figures near f64::MAX: the same verdicts, not overflowed sums.
        let huge = |v: &[f64]| v.iter().map(|x| x * 1e307).collect::<Vec<_>>();
        assert!(!beyond_noise(
            &huge(&[1.0, 1.2, 0.8]),
            &huge(&[1.1, 1.3, 0.9]),
            q
        ));
        assert!(beyond_noise(
            &huge(&[10.0, 10.1, 9.9]),
            &huge(&[12.0, 12.1, 11.9]),
            q
        ));
    }
}
