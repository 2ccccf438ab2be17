//! Helpers shared by the integration tests (and `tests/disabled`): run files,
//! HTTP, real servers, a minimal executor.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The seed module's `meta` keys, in its order: every run file starts with them.
pub const SEED_META_KEYS: [&str; 10] = [
    "run_id",
    "started_at",
    "ended_at",
    "cpu_percent_max",
    "cpu_percent_mean",
    "rss_max_mib",
    "phase_durations_seconds_total",
    "all_phases_duration_seconds_total",
    "function_durations_seconds_total",
    "all_functions_duration_seconds_total",
];

/// This process's resident memory in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The run file at `path`, parsed.
pub fn read_run_file(path: impl AsRef<Path>) -> serde_json::Value {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A run of `config` with an entry of each kind and each kind of event (a
/// phase, a measured call, a function with resources, two counts, a
/// process sample) in `dir`: ended with `extra_meta`, or flushed (still
/// open) when that is `None`. The file's path.
pub fn every_kind_run(
    config: runmetrics::Config,
    dir: &Path,
    extra_meta: Option<serde_json::Value>,
) -> PathBuf {
    let rec = runmetrics::Recorder::new(config).unwrap();
    rec.start_run(dir).unwrap();
    {
        let _g = rec.phase("grounding", "pipeline");
    }
    rec.measure_fn("main_infer", "inference", || std::hint::black_box(1));
    {
        let _f = rec.function("load_model", "init").with_resources();
    }
    rec.observe_counts(&[("facts_count", 200), ("grounded_rules", 10)]);
    rec.sample_process_gauges();
    match extra_meta {
        Some(extra) => rec.end_run(extra).unwrap(),
        None => rec.flush().unwrap(),
    }
}

/// The `key` of every entry of `meta[list]`, in file order: e.g. the phase
/// names of `phase_durations_seconds_total`.
pub fn entry_names(file: &serde_json::Value, list: &str, key: &str) -> Vec<String> {
    file["meta"][list]
        .as_array()
        .unwrap_or_else(|| panic!("meta.{list} is not a list"))
        .iter()
        .map(|e| e[key].as_str().expect("a name").to_owned())
        .collect()
}

/// The count of phase `phase` in a run file (0 when it has none).
pub fn phase_count(file: &serde_json::Value, phase: &str) -> u64 {
    file["meta"]["phase_durations_seconds_total"]
        .as_array()
        .expect("meta.phase_durations_seconds_total is a list")
        .iter()
        .find(|e| e["phase"] == phase)
        .map_or(0, |e| e["count"].as_u64().expect("a count"))
}

/// A minimal HTTP/1.0 exchange for tests: (status, head, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// `GET /metrics` with `accept`: (content type, body bytes).
pub fn scrape(addr: SocketAddr, accept: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&got[..split]).to_ascii_lowercase();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_string();
    (content_type, got[split + 4..].to_vec())
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A free loopback port (bound and released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The path of an installed binary. When it is missing the test says so
/// loudly; under `scripts/test` (RUNMETRICS_REQUIRE_SERVERS=1) it fails.
pub fn binary(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = format!(
            "`{name}` is not installed: this test needs the real server \
             (Debian: apt-get install prometheus prometheus-pushgateway; scripts/test does it)"
        );
        if std::env::var_os("RUNMETRICS_REQUIRE_SERVERS").is_some() {
            panic!("{msg}");
        }
        eprintln!("NOT RUN: {msg}");
    }
    found
}

/// A server process stopped when dropped: asked to stop (SIGTERM) the way
/// an operator stops it, so it writes whatever state it keeps on shutdown,
/// and killed if it has not stopped within 10 s. Every server a test
/// starts keeps its state in the test's own temporary directory, never in
/// its default location, so no run of a test sees another's state.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let asked = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let until = Instant::now() + Duration::from_secs(10);
        while asked && Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus (the `prometheus` binary found by [`binary`]) on a free
/// loopback port, scraping `targets` as job `job` every second, its data in
/// `dir`, with `flags` added (e.g. `--enable-feature=native-histograms`);
/// returned once it says it is ready. Stopped when the [`Child`] drops.
pub fn start_prometheus(
    prometheus: &Path,
    dir: &Path,
    job: &str,
    targets: &[String],
    flags: &[&str],
) -> (Child, SocketAddr) {
    start_prometheus_with(prometheus, dir, &scrape_job(job, targets, false), flags)
}

/// One `scrape_configs` entry: `targets` as job `job`, with `honor_labels`
/// (a Pushgateway's pushed `job` and grouping labels kept as pushed).
pub fn scrape_job(job: &str, targets: &[String], honor_labels: bool) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "  - job_name: {job}\n    honor_labels: {honor_labels}\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

/// [`start_prometheus`] with its `scrape_configs` entries as given (YAML,
/// each entry indented by two spaces, as [`scrape_job`] writes them).
pub fn start_prometheus_with(
    prometheus: &Path,
    dir: &Path,
    scrape_configs: &str,
    flags: &[&str],
) -> (Child, SocketAddr) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{scrape_configs}"),
    )
    .unwrap();
    let child = Child(
        std::process::Command::new(prometheus)
            .args(flags)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("prometheus ready", Duration::from_secs(30), || {
        TcpStream::connect(addr).ok()?;
        (http(addr, "GET", "/-/ready").0 == 200).then_some(())
    });
    (child, addr)
}

/// What `promtool check metrics` says of `text` (empty: no problem), or
/// the exit status's failure.
pub fn promtool_check(promtool: &Path, text: &str) -> Result<(), String> {
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

/// A minimal executor: polls a future to completion on this thread.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A small deterministic generator (a 64-bit LCG): schedules and lengths
/// repeat from run to run.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }

    /// Below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        (self.next_u64() >> 33) % n
    }

    /// In (0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// A real Pushgateway, stopped when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    // Declared before its state's directory: the gateway stops (and writes
    // its persistence file) before the directory goes.
    _child: Child,
    _state: tempfile::TempDir,
}

/// A Pushgateway of its own: a free loopback port, and its persistence
/// file in a fresh temporary directory. Debian's gateway otherwise persists
/// to `/var/lib/prometheus/pushgateway.data` and loads it at start, so
/// every gateway on the machine would see the groups an earlier one kept.
pub fn start_pushgateway() -> Option<Gateway> {
    let bin = binary("prometheus-pushgateway")?;
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Child(
        std::process::Command::new(bin)
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--persistence.file={}",
                state.path().join("pushgateway.data").display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("pushgateway ready", Duration::from_secs(30), || {
        std::net::TcpStream::connect(addr).ok()?;
        (http(addr, "GET", "/-/ready").0 == 200).then_some(())
    });
    Some(Gateway {
        addr,
        _child: child,
        _state: state,
    })
}
