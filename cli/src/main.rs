//! `runmetrics`: read, compare and picture runmetrics run files.
//!
//! Exit status: 0 when done, 1 when `compare --fail-on-regression` found a
//! regression, 2 for bad usage or a file that cannot be read.

mod compare;
mod format;
mod report;
mod run_file;
mod show;
mod svg;
mod trace;

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
    Show {
        /// A run file (<log_dir>/<run_id>.json).
        run: PathBuf,
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
        /// instead of merging each side's runs.
        #[arg(long)]
        each: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One self-contained HTML page: CPU and RSS over time, latency
    /// distributions, a timeline and the tables; with BASE, side by side.
    Report {
        /// A run file.
        run: PathBuf,
        /// A run file to compare with.
        base: Option<PathBuf>,
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
            eprintln!("runmetrics: {message}");
            ExitCode::from(2)
        }
    }
}

fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("a JSON value always serializes")
    );
}

fn run(command: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        Command::Show { run, json } => {
            let run = run_file::load(&run)?;
            if json {
                print_json(&show::json(&run));
            } else {
                print!("{}", show::text(&run));
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
            json,
        } => {
            let options = compare::Options { metric, threshold };
            let regressed = if each {
                let pairs = compare::each(&base, &new, &options)?;
                if json {
                    print_json(&pairs.json());
                } else {
                    print!("{}", pairs.text());
                }
                pairs.regressed()
            } else {
                let base = compare::load_side(&base)?;
                let new = compare::load_side(&new)?;
                let c = compare::compare(&base, &new, &options);
                if json {
                    print_json(&compare::json(&c));
                } else {
                    print!("{}", compare::text(&c));
                }
                c.regressed()
            };
            if fail_on_regression && regressed > 0 {
                eprintln!(
                    "runmetrics: {regressed} regressed beyond {:.1} % (--fail-on-regression)",
                    threshold * 100.0
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { run, base, output } => {
            let run = report::Loaded::load(&run)?;
            let base = base.map(|b| report::Loaded::load(&b)).transpose()?;
            std::fs::write(&output, report::html(&run, base.as_ref())).map_err(|e| {
                format!("cannot write {}: {e}; choose another -o", output.display())
            })?;
            println!("{}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { format, run } => {
            match format {
                ExportFormat::ChromeTrace => {
                    let stdout = std::io::stdout();
                    let mut out = std::io::BufWriter::new(stdout.lock());
                    trace::write_chrome_trace(&run, &mut out)?;
                    std::io::Write::flush(&mut out)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
