//! `runmetrics`: read, compare and picture runmetrics run files.
//!
//! Exit status: 0 when done, 1 when `compare --fail-on-regression` found a
//! regression, 2 for bad usage, a file that cannot be read (or whose
//! figures cannot be true) or output that cannot be written. A closed pipe
//! on standard output (`| head`) is not a failure: the output stops
//! quietly and the status is the command's own.

mod compare;
mod fleet;
mod format;
mod markdown;
mod report;
mod run_file;
mod show;
mod svg;
mod trace;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "runmetrics",
    version,
    about = "Read, compare and picture runmetrics run files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The per-phase and per-function table, counts, CPU and RSS, drops.
    /// Several runs (the workers of a job) give one merged table.
    Show {
        /// Run files (<log_dir>/<run_id>.json), directories of them, or
        /// quoted globs ('workers/*/*.json'); several are merged.
        #[arg(required = true)]
        runs: Vec<String>,
        /// With several runs: each phase and function per run too, and
        /// each run's process figures.
        #[arg(long)]
        per_process: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Per phase and function: the change in p50, p99, mean and total from
    /// BASE to NEW, marked improved, regressed or unchanged.
    Compare {
        /// A run file, a directory of run files, or a quoted glob ('a/*.json').
        base: String,
        /// The same, for the runs to judge.
        new: String,
        /// A relative change this size or smaller is no change: 5%, 0.05.
        #[arg(long, default_value = "5%", value_parser = parse_threshold)]
        threshold: f64,
        /// The statistic verdicts are taken on.
        #[arg(long, value_enum, default_value_t = compare::Metric::P50)]
        metric: compare::Metric,
        /// Exit with status 1 when anything regressed beyond the threshold.
        #[arg(long)]
        fail_on_regression: bool,
        /// BASE and NEW are directories: compare their files pairwise by
        /// name (one comparison per benchmark, as CriterionRuns writes them)
        /// instead of merging each side's runs. A side may be a quoted glob
        /// of directories ('runs/base-*'): the runs of each name are merged,
        /// and their spread judges noise.
        #[arg(long)]
        each: bool,
        /// The output: a text table, JSON, or a GitHub-flavoured markdown
        /// table for a pull-request comment.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Print JSON instead of a table (--format json).
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// One self-contained HTML page: CPU and RSS over time, latency
    /// distributions, a timeline and the tables; with BASE, side by side.
    Report {
        /// A run file, a directory of them, or a quoted glob: several are
        /// merged (one table, a CPU and RSS line and timeline lanes per run).
        run: String,
        /// The same, to compare with.
        base: Option<String>,
        /// Where to write the page.
        #[arg(short, long, default_value = "report.html")]
        output: PathBuf,
    },
    /// The run in another format, on standard output.
    Export {
        /// The format: chrome-trace (Perfetto UI, chrome://tracing).
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// A run file.
        run: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// Aligned text tables.
    Text,
    /// One JSON object.
    Json,
    /// GitHub-flavoured markdown: a summary line, the changed rows
    /// (regressions first), the unchanged in a collapsed section.
    Markdown,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// The Trace Event Format's JSON object form.
    ChromeTrace,
}

/// `5%`, `5 %` or `0.05`.
fn parse_threshold(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a threshold; write e.g. 5% or 0.05"))?;
    if !(0.0..10.0).contains(&value) {
        return Err(format!("{s:?} is out of range; write e.g. 5% or 0.05"));
    }
    Ok(value)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(message) => {
            say(&message);
            ExitCode::from(2)
        }
    }
}

/// A line on standard error (which nothing can be done about if it fails).
fn say(message: &dyn std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "runmetrics: {message}");
}

/// Standard output failed for another reason than a closed pipe.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output: {0}; free space, or send the output elsewhere")]
struct StdoutError(std::io::Error);

/// A closed pipe (the reader has all it wanted: `| head`) ends the output
/// quietly; any other failure (a full disk) is an error.
fn closed_is_done(result: std::io::Result<()>) -> Result<(), StdoutError> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(StdoutError),
    }
}

/// Writes `text` to standard output, flushed (see [`closed_is_done`]).
fn emit(text: &str) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    closed_is_done(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

fn emit_json(v: &serde_json::Value) -> Result<(), StdoutError> {
    let text = serde_json::to_string_pretty(v).expect("a JSON value always serializes");
    emit(&format!("{text}\n"))
}

fn run(command: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        Command::Show {
            runs,
            per_process,
            json,
        } => {
            let mut loaded = Vec::new();
            for arg in &runs {
                loaded.extend(compare::load_side(arg)?);
            }
            if let [run] = &loaded[..] {
                if json {
                    emit_json(&show::json(run))?;
                } else {
                    emit(&show::text(run))?;
                }
            } else {
                let fleet = fleet::Fleet::merge(loaded)?;
                if json {
                    emit_json(&show::fleet_json(&fleet, per_process))?;
                } else {
                    emit(&show::fleet_text(&fleet, per_process))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare {
            base,
            new,
            threshold,
            metric,
            fail_on_regression,
            each,
            format,
            json,
        } => {
            let options = compare::Options { metric, threshold };
            let format = if json { OutputFormat::Json } else { format };
            let regressed = if each {
                let pairs = compare::each(&base, &new, &options)?;
                match format {
                    OutputFormat::Json => emit_json(&pairs.json())?,
                    OutputFormat::Text => emit(&pairs.text())?,
                    OutputFormat::Markdown => emit(&markdown::pairs(&pairs))?,
                }
                pairs.regressed()
            } else {
                let base = compare::load_side(&base)?;
                let new = compare::load_side(&new)?;
                let c = compare::compare(&base, &new, &options)?;
                match format {
                    OutputFormat::Json => emit_json(&compare::json(&c))?,
                    OutputFormat::Text => emit(&compare::text(&c))?,
                    OutputFormat::Markdown => emit(&markdown::comparison(&c))?,
                }
                c.regressed()
            };
            if fail_on_regression && regressed > 0 {
                say(&format_args!(
                    "{regressed} regressed beyond {:.1} % (--fail-on-regression)",
                    threshold * 100.0
                ));
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { run, base, output } => {
            let run = report::Loaded::load_side(&[run])?;
            let base = base.map(|b| report::Loaded::load_side(&[b])).transpose()?;
            let page = report::html(&run, base.as_ref())?;
            std::fs::write(&output, page).map_err(|e| {
                format!("cannot write {}: {e}; choose another -o", output.display())
            })?;
            emit(&format!("{}\n", output.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { format, run } => {
            match format {
                ExportFormat::ChromeTrace => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    match trace::write_chrome_trace(&run, &mut out)
                        .and_then(|()| out.flush().map_err(trace::TraceError::Write))
                    {
                        Err(trace::TraceError::Write(e)) => closed_is_done(Err(e))?,
                        other => other?,
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
