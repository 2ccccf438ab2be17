//! Pushes against a real Prometheus Pushgateway, and against gateways that
//! are down, slow or refuse.
#![cfg(feature = "push")]

mod common;

use std::time::Duration;

use common::{http, start_pushgateway, Gateway};
use runmetrics::{Config, EndRunError, PushError, PushMethod, Recorder};
use serde_json::Value;

fn config(gw: &Gateway) -> Config {
    Config::new()
        .job("al_inference")
        .grouping("env", "dev")
        .grouping("path", "a/b")
        .pushgateway(format!("http://{}", gw.addr))
}

/// The gateway's lines for our group that start with `metric`.
fn lines(gw: &Gateway, metric: &str) -> Vec<String> {
    let (_, _, body) = http(gw.addr, "GET", "/metrics");
    body.lines()
        .filter(|l| l.starts_with(metric) && l.contains("job=\"al_inference\""))
        .map(str::to_owned)
        .collect()
}

fn run_with_phase(
    rec: &Recorder,
    dir: &std::path::Path,
    phase: &'static str,
) -> Result<std::path::PathBuf, EndRunError> {
    rec.start_run(dir).unwrap();
    {
        let _t = rec.phase(phase, "pipeline");
    }
    rec.end_run(Value::Null)
}

#[test]
fn end_run_pushes_with_job_and_grouping_labels() {
    let Some(gw) = start_pushgateway() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(config(&gw)).unwrap();
    let path = run_with_phase(&rec, dir.path(), "grounding").unwrap();
    assert!(path.exists());
    let got = lines(&gw, "runmetrics_phase_duration_seconds_count");
    assert_eq!(got.len(), 1, "{got:?}");
    for label in [
        "env=\"dev\"",
        "path=\"a/b\"",
        "phase=\"grounding\"",
        "module=\"pipeline\"",
    ] {
        assert!(got[0].contains(label), "{label} missing in {got:?}");
    }
    assert!(got[0].ends_with(" 1"), "{got:?}");
}

/// The groups the gateway holds (one `push_time_seconds` per group).
fn groups(gw: &Gateway) -> Vec<String> {
    let (_, _, body) = http(gw.addr, "GET", "/metrics");
    body.lines()
        .filter(|l| l.starts_with("push_time_seconds{"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_gateway_a_test_starts_begins_empty() {
    let Some(first) = start_pushgateway() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(config(&first)).unwrap();
    run_with_phase(&rec, dir.path(), "kept").unwrap();
    assert_eq!(groups(&first).len(), 1, "{:?}", groups(&first));
    // Stopped as an operator stops it: it writes its persistence file.
    drop(first);
    let Some(second) = start_pushgateway() else {
        return;
    };
    assert_eq!(
        groups(&second),
        Vec::<String>::new(),
        "a gateway started the same way holds the first one's groups"
    );
}

#[test]
fn put_replaces_the_group_post_adds_and_delete_removes() {
    let Some(gw) = start_pushgateway() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = Recorder::new(config(&gw)).unwrap();
    run_with_phase(&first, dir.path(), "a").unwrap();
    drop(first);
    let second = Recorder::new(config(&gw)).unwrap();
    run_with_phase(&second, dir.path(), "b").unwrap(); // PUT
    let phases = lines(&gw, "runmetrics_phase_duration_seconds_count");
    assert_eq!(phases.len(), 1, "PUT replaced the group: {phases:?}");
    assert!(phases[0].contains("phase=\"b\""));

    // A recorder with counts but no phases POSTs during its run: the phase
    // family pushed before stays, the count family is added.
    let third = Recorder::new(config(&gw)).unwrap();
    third.start_run(dir.path()).unwrap();
    third.observe_counts(&[("facts", 7)]);
    third.push(PushMethod::Post).unwrap();
    assert_eq!(
        lines(&gw, "runmetrics_phase_duration_seconds_count").len(),
        1,
        "POST kept"
    );
    assert_eq!(lines(&gw, "runmetrics_count_value").len(), 1, "POST added");
    // end_run PUTs: the phase family is gone.
    third.end_run(Value::Null).unwrap();
    assert!(
        lines(&gw, "runmetrics_phase_duration_seconds_count").is_empty(),
        "PUT replaced all"
    );
    assert_eq!(lines(&gw, "runmetrics_count_value").len(), 1);
    third.push(PushMethod::Delete).unwrap();
    assert!(
        lines(&gw, "runmetrics_").is_empty(),
        "DELETE removed the group"
    );
}

#[test]
fn a_gateway_that_is_down_fails_end_run_after_the_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port(); // nothing listens there
    let rec = Recorder::new(
        Config::new()
            .pushgateway(format!("http://127.0.0.1:{port}"))
            .push_basic_auth("user", "s3cret-password"),
    )
    .unwrap();
    match run_with_phase(&rec, dir.path(), "p") {
        Err(e @ EndRunError::Push { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("could not reach") && msg.contains(&port.to_string()),
                "{msg}"
            );
            assert!(!msg.contains("s3cret"), "credentials leaked: {msg}");
            let EndRunError::Push { path, .. } = e else {
                unreachable!()
            };
            let file = std::fs::read_to_string(&path).unwrap();
            assert!(file.contains("\"phase\": \"p\"") && !file.contains("s3cret"));
        }
        other => panic!("expected a push error, got {other:?}"),
    }
    assert!(!rec.is_run_open(), "the run ended: its file is written");
    assert!(
        !format!("{:?}", rec.config()).contains("s3cret"),
        "Debug shows credentials"
    );
}

#[test]
fn a_slow_gateway_times_out_and_a_refusing_one_reports_its_status() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rec = Recorder::new(
        Config::new()
            .pushgateway(format!("http://{}", silent.local_addr().unwrap()))
            .push_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    match run_with_phase(&rec, dir.path(), "p") {
        Err(EndRunError::Push {
            source: PushError::Timeout { .. },
            ..
        }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    // Our own metrics server refuses anything but GET /metrics: a 4xx.
    let server = Recorder::new(Config::new().port(0)).unwrap();
    let rec = Recorder::new(
        Config::new().pushgateway(format!("http://{}", server.metrics_addr().unwrap())),
    )
    .unwrap();
    match rec.push(PushMethod::Put) {
        Err(e @ PushError::Status { status: 404, .. }) => {
            assert!(e.to_string().contains("404"), "{e}")
        }
        other => panic!("expected a 404, got {other:?}"),
    }
}

#[test]
fn a_bad_gateway_url_is_refused_when_the_recorder_is_made() {
    let e = Recorder::new(Config::new().pushgateway("localhost:9091")).unwrap_err();
    assert!(e.to_string().contains("http://"), "{e}");
}

#[test]
fn periodic_pushes_to_a_hung_gateway_never_stall_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rec = Recorder::new(
        Config::new()
            .pushgateway(format!("http://{}", silent.local_addr().unwrap()))
            .push_timeout(Duration::from_secs(2))
            .push_interval(Duration::from_millis(50))
            .sample_interval(Duration::from_millis(50)),
    )
    .unwrap();
    rec.start_run(dir.path()).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let path = match rec.end_run(Value::Null) {
        Err(EndRunError::Push {
            path,
            source: PushError::Timeout { .. },
        }) => path,
        other => panic!("expected the final push to time out, got {other:?}"),
    };
    let file = common::read_run_file(path);
    // Every push hangs for 2 s; a collector that waited for them would have
    // taken one or two samples in 700 ms instead of ~14.
    let samples = file["meta"]["process_samples"].as_u64().unwrap();
    assert!(
        samples >= 8,
        "the collector stalled: {samples} samples in 700 ms"
    );
}

/// A gateway that accepts connections and never answers, until released;
/// after that nothing listens (connections are refused).
struct Silent {
    addr: std::net::SocketAddr,
    accepted: std::sync::mpsc::Receiver<()>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    fn start() -> Silent {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, accepted) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopping.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        held.push(stream);
                        let _ = tx.send(());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // Dropping the listener and the held connections: the pushes
            // under way fail at once, later ones are refused.
        });
        Silent {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until a push has connected (and now hangs).
    fn wait_for_push(&self) {
        self.accepted
            .recv_timeout(Duration::from_secs(30))
            .expect("the push reached the silent gateway");
    }

    fn release(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.release();
    }
}

/// A recorder pushing to `gw` whose pushes hang far longer than the test
/// records: a ring of 1024 records and samples only on request.
fn hung_config(gw: &Silent) -> Config {
    Config::new()
        .pushgateway(gw.url())
        .push_timeout(Duration::from_secs(30))
        .buffer_records(1024)
        .sample_interval(Duration::from_secs(3600))
}

const PACED_VALUES: i64 = 2_000;
const SAMPLE_EVERY: i64 = 20;

/// Records 2 000 count values at a pace (4 000 records, four rings' worth:
/// a collector that stopped draining for the push would drop most) and
/// asks for a sample every 20th, then writes a snapshot; returns it.
fn record_paced(rec: &Recorder) -> Value {
    for i in 0..PACED_VALUES {
        rec.observe_counts(&[("paced", i)]);
        if i % SAMPLE_EVERY == 0 {
            rec.sample_process_gauges();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    common::read_run_file(rec.flush().unwrap())
}

/// What a snapshot recorded while a push hung must show: nothing dropped,
/// every count value, and the samples asked for as events.
fn assert_nothing_held_up(file: &Value) {
    assert_eq!(file["meta"]["records_dropped"], 0, "{:#}", file["meta"]);
    let paced = file["meta"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "paced")
        .expect("the paced counts");
    assert_eq!(paced["observations"], PACED_VALUES as u64);
    let samples = file["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "process_sample")
        .count() as i64;
    // One at the start, and one for each request unless two came within
    // one collector pass (10 ms apart here, so nearly never).
    let requested = PACED_VALUES / SAMPLE_EVERY;
    assert!(
        samples > requested / 2,
        "{samples} process samples for {requested} requests"
    );
}

#[test]
fn a_hung_end_run_push_holds_up_neither_the_collector_nor_other_callers() {
    let mut gw = Silent::start();
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(hung_config(&gw)).unwrap();
    rec.start_run(dir.path()).unwrap();
    std::thread::scope(|s| {
        let ending = s.spawn(|| rec.end_run(Value::Null));
        gw.wait_for_push();
        // While the first run's push hangs, the next run starts and records.
        rec.start_run(dir.path()).unwrap();
        let file = record_paced(&rec);
        assert!(
            !ending.is_finished(),
            "the next run waited for the hung push to end"
        );
        assert_nothing_held_up(&file);
        gw.release();
        match ending.join().unwrap() {
            Err(EndRunError::Push { path, .. }) => assert!(path.exists()),
            other => panic!("expected the hung push to fail once released, got {other:?}"),
        }
    });
    match rec.end_run(Value::Null) {
        Err(EndRunError::Push { path, .. }) => {
            assert_eq!(common::read_run_file(path)["meta"]["records_dropped"], 0)
        }
        other => panic!("expected a refused push, got {other:?}"),
    }
}

#[test]
fn a_hung_explicit_push_holds_up_neither_the_collector_nor_other_callers() {
    let mut gw = Silent::start();
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(hung_config(&gw)).unwrap();
    rec.start_run(dir.path()).unwrap();
    std::thread::scope(|s| {
        let pushing = s.spawn(|| rec.push(PushMethod::Put));
        gw.wait_for_push();
        let file = record_paced(&rec);
        assert!(
            !pushing.is_finished(),
            "recording waited for the hung push to end"
        );
        assert_nothing_held_up(&file);
        gw.release();
        assert!(pushing.join().unwrap().is_err());
    });
    match rec.end_run(Value::Null) {
        Err(EndRunError::Push { path, .. }) => {
            let file = common::read_run_file(path);
            assert_eq!(file["meta"]["records_dropped"], 0, "{:#}", file["meta"]);
        }
        other => panic!("expected a refused push, got {other:?}"),
    }
}
