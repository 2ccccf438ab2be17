//! `/metrics` under attack (issue 13): clients that announce what they never
//! send, never read what they asked for, never end a header line, or just
//! hold connections open. For each, the process survives, memory and threads
//! stay bounded, the attacker is cut off, and a normal scrape is answered
//! within 100 ms meanwhile.
//!
//! The tests run one at a time (`exclusive`): they read the process's RSS and
//! thread count, and time scrapes on a small machine.
#![cfg(feature = "prometheus")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::{eventually, http, phase_count};
use runmetrics::{Config, Recorder};
use serde_json::Value;

/// The bound for a normal scrape while an attack goes on.
const SCRAPE_BOUND: Duration = Duration::from_millis(100);
/// The server's header-read (and keep-alive idle) timeout and its write-stall
/// timeout are both 5 s; the tests give them this long to act.
const CUT_OFF_WITHIN: Duration = Duration::from_secs(9);
/// How long a client that never reads waits before it looks: past the
/// server's 5 s write-stall timeout.
const NEVER_READ_FOR: Duration = Duration::from_millis(6_500);

fn exclusive() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

fn recorder(publish: Duration) -> Recorder {
    Recorder::new(Config::new().port(0).publish_interval(publish)).unwrap()
}

/// Times 100 phases named `<prefix>_000`.. and waits until `/metrics` lists
/// them all, so every answer is of a known, large size.
fn publish_phases(rec: &Recorder, addr: SocketAddr, prefix: &str) {
    for i in 0..100 {
        let _t = rec.phase_dynamic(&format!("{prefix}_{i:03}"), "hostile");
    }
    let last = format!("{prefix}_099");
    eventually("the phases in /metrics", Duration::from_secs(10), || {
        let (_, _, body) = http(addr, "GET", "/metrics");
        body.contains(&last).then_some(())
    });
}

/// A client that sends `requests` pipelined GETs of `/metrics` and never
/// reads an answer (the server may stop reading once they back up).
fn never_reading(addr: SocketAddr, requests: usize) -> TcpStream {
    let mut greedy = TcpStream::connect(addr).unwrap();
    greedy
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = greedy.write_all(
        "GET /metrics HTTP/1.1\r\nHost: greedy\r\n\r\n"
            .repeat(requests)
            .as_bytes(),
    );
    greedy
}

/// One `GET /metrics` on a fresh connection, timed from connect to the last
/// byte; `None` if it fails or takes more than a second.
fn timed_scrape(addr: SocketAddr) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: scraper\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let ok = head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200");
    (ok && body.contains("# TYPE")).then_some(took)
}

/// A normal scrape answers within 100 ms: the best of five tries, for a
/// shared 2-core machine (a blocked server fails all five).
fn assert_scrape_answers(addr: SocketAddr, during: &str) -> Duration {
    let tries: Vec<Option<Duration>> = (0..5).map(|_| timed_scrape(addr)).collect();
    let best = tries.iter().flatten().min().copied();
    match best {
        Some(best) if best < SCRAPE_BOUND => best,
        _ => panic!("no scrape answered within {SCRAPE_BOUND:?} during {during}: {tries:?}"),
    }
}

/// Reads what is left on `s` until the server closes it: `true` for EOF or a
/// reset, `false` if the connection is still open after `within`; and what
/// was read.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let until = Instant::now() + within;
    let mut buf = vec![0; 1 << 16];
    let mut read = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (false, read);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (true, read),
            Ok(n) => read.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (true, read),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (false, read)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("unexpected read error: {e}"),
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: in /proc/self/status")
}

fn status_of(raw: &[u8]) -> u16 {
    String::from_utf8_lossy(raw)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Reads one HTTP/1.1 response with a `Content-Length` (a keep-alive
/// connection stays open after it) and returns its status.
fn read_one_response(s: &mut TcpStream) -> u16 {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a content-length");
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    status_of(&raw)
}

/// Sends `bytes` on a fresh connection and reads the answer until the server
/// closes (at most 5 s).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn a_huge_content_length_is_never_allocated_and_the_run_survives() {
    let _one = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder(Duration::from_millis(50));
    let addr = rec.metrics_addr().unwrap();
    rec.start_run(dir.path()).unwrap();
    for _ in 0..10 {
        let _t = rec.phase("before_attack", "hostile");
    }
    // Announced, never sent; the connection stays open.
    let mut attacks = Vec::new();
    for head in [
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
        "PUT /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
        "POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n",
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        attacks.push((head, s));
    }
    for (head, s) in &mut attacks {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let closed = s.read_to_end(&mut out).is_ok();
        let expected = if head.starts_with("PUT") {
            404
        } else if head.starts_with("GET") {
            200
        } else {
            405
        };
        assert_eq!(status_of(&out), expected, "{head:?}");
        assert!(
            closed,
            "the server closes after a request with a body: {head:?}"
        );
    }
    let best = assert_scrape_answers(addr, "huge Content-Length");
    eprintln!("scrape after four huge Content-Lengths: {best:?}");
    for _ in 0..10 {
        let _t = rec.phase("after_attack", "hostile");
    }
    let file = common::read_run_file(rec.end_run(Value::Null).unwrap());
    assert_eq!(phase_count(&file, "before_attack"), 10);
    assert_eq!(phase_count(&file, "after_attack"), 10);
}

#[test]
fn two_thousand_pipelined_requests_left_unread_do_not_block_a_scrape() {
    let _one = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder(Duration::from_millis(50));
    let addr = rec.metrics_addr().unwrap();
    // Answers of about 250 KB: 2 000 of them are far more than the sockets'
    // buffers hold.
    rec.start_run(dir.path()).unwrap();
    publish_phases(&rec, addr, "pipelined");
    let mut greedy = never_reading(addr, 2_000);
    std::thread::sleep(Duration::from_millis(300));
    let best = assert_scrape_answers(addr, "2 000 unread pipelined requests");
    eprintln!("scrape during 2 000 unread pipelined requests: {best:?}");
    std::thread::sleep(NEVER_READ_FOR);
    let (closed, read) = closed_by_server(&mut greedy, Duration::from_secs(3));
    assert!(closed, "the client that never reads is dropped");
    let answers = read.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
    eprintln!("the pipelining client got {answers} of 2 000 answers before it was dropped");
    assert!(
        answers < 2_000,
        "dropped before all 2 000 answers were sent: {answers} answers"
    );
    rec.end_run(Value::Null).unwrap();
}

#[test]
fn an_unread_multi_mib_exposition_does_not_block_a_scrape() {
    let _one = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder(Duration::from_millis(200));
    let addr = rec.metrics_addr().unwrap();
    rec.start_run(dir.path()).unwrap();
    // About 9 MB: more than twice what the sockets' buffers take in before
    // the server's writes stall (4 MB here).
    for i in 0..3_000 {
        let _t = rec.phase_dynamic(&format!("a_rather_long_phase_name_{i:05}"), "hostile");
    }
    let size = eventually("a big exposition", Duration::from_secs(20), || {
        let (_, _, body) = http(addr, "GET", "/metrics");
        body.contains("a_rather_long_phase_name_02999")
            .then_some(body.len())
    });
    assert!(size > 8_000_000, "a multi-MiB exposition: {size} bytes");
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: stuck\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let best = assert_scrape_answers(addr, "an unread GET of a multi-MiB exposition");
    eprintln!("scrape of {size} bytes during an unread GET of it: {best:?}");
    std::thread::sleep(NEVER_READ_FOR);
    let (closed, read) = closed_by_server(&mut stuck, Duration::from_secs(3));
    assert!(closed, "the client that never reads is dropped");
    eprintln!(
        "the unread GET got {} of {size} bytes before it was dropped",
        read.len()
    );
    assert!(
        read.len() < size,
        "dropped before the whole answer was sent: {} of {size} bytes",
        read.len()
    );
    rec.end_run(Value::Null).unwrap();
}

#[test]
fn a_body_announced_but_not_sent_does_not_block_a_scrape() {
    let _one = exclusive();
    let rec = recorder(Duration::from_millis(50));
    let addr = rec.metrics_addr().unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"POST /metrics HTTP/1.1\r\nHost: slow\r\nContent-Length: 1000000\r\n\r\nabc")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let best = assert_scrape_answers(addr, "a POST announcing 1 MB and sending 3 bytes");
    eprintln!("scrape during a POST announcing 1 MB and sending 3 bytes: {best:?}");
    slow.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = Vec::new();
    let closed = slow.read_to_end(&mut out).is_ok();
    assert_eq!(status_of(&out), 405, "{}", String::from_utf8_lossy(&out));
    assert!(closed, "answered and closed without waiting for the body");
}

#[test]
fn a_header_line_that_never_ends_is_cut_off_without_growing_memory() {
    let _one = exclusive();
    let rec = recorder(Duration::from_millis(50));
    let addr = rec.metrics_addr().unwrap();
    let rss_before = common::rss_bytes();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        .unwrap();
    let chunk = vec![b'a'; 1 << 16];
    let mut sent = 0usize;
    let mut cut_off = false;
    while sent < 64 << 20 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                cut_off = true;
                break;
            }
        }
        if sent % (8 << 20) < chunk.len() {
            assert_scrape_answers(addr, "a header line that never ends");
        }
    }
    let grown = common::rss_bytes().saturating_sub(rss_before);
    eprintln!(
        "endless header: cut off after {} KiB sent, RSS +{} KiB",
        sent >> 10,
        grown >> 10
    );
    assert!(cut_off, "the server cut the endless header off");
    assert!(
        sent < 16 << 20,
        "cut off after a bounded number of bytes: {sent}"
    );
    assert!(grown < 8 << 20, "RSS grew by {grown} bytes");
    let (closed, _) = closed_by_server(&mut s, Duration::from_secs(2));
    assert!(closed);
    assert_scrape_answers(addr, "after the endless header");
}

#[test]
fn two_thousand_idle_connections_hold_no_threads_and_are_closed() {
    let _one = exclusive();
    let rec = recorder(Duration::from_millis(50));
    let addr = rec.metrics_addr().unwrap();
    assert_scrape_answers(addr, "nothing");
    let threads_before = threads();
    let fds_before = open_fds();
    let mut idle: Vec<TcpStream> = (0..2_000)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let threads_during = threads();
    // The test's own 2 000 ends, and the server's, at most 128.
    let server_fds = open_fds().saturating_sub(fds_before + 2_000);
    let best = assert_scrape_answers(addr, "2 000 idle connections");
    eprintln!(
        "2 000 idle connections: threads {threads_before} -> {threads_during}, scrape {best:?}"
    );
    assert!(
        threads_during <= threads_before + 2,
        "idle connections hold no threads: {threads_before} -> {threads_during}"
    );
    eprintln!("2 000 idle connections: the server holds {server_fds} of them");
    assert!(
        server_fds <= 128 + 4,
        "the server caps its connections: it holds {server_fds}"
    );
    // A keep-alive scraper made after the flood is served, then closed once
    // it sits idle as long as the idle timeout.
    let mut kept = TcpStream::connect(addr).unwrap();
    for _ in 0..2 {
        kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: kept\r\n\r\n")
            .unwrap();
        assert_eq!(read_one_response(&mut kept), 200);
    }
    // Every idle connection is closed by the server: most at once to make
    // room, the rest at the idle timeout.
    let until = Instant::now() + CUT_OFF_WITHIN;
    for s in &mut idle {
        let left = until.saturating_duration_since(Instant::now());
        let (closed, _) = closed_by_server(s, left.max(Duration::from_millis(1)));
        assert!(
            closed,
            "an idle connection is still open after {CUT_OFF_WITHIN:?}"
        );
    }
    let (closed, _) = closed_by_server(&mut kept, Duration::from_secs(7));
    assert!(closed, "an idle keep-alive connection is closed");
}

#[test]
fn methods_paths_and_bad_requests_get_their_status_codes() {
    let _one = exclusive();
    let rec = recorder(Duration::from_millis(50));
    let addr = rec.metrics_addr().unwrap();
    let (status, head, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200);
    let (status, head_only, rest) = http(addr, "HEAD", "/metrics");
    assert_eq!(status, 200);
    assert!(rest.is_empty(), "HEAD has no body: {rest:?}");
    let lower = head_only.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head_only}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let (status, head, _) = http(addr, method, "/metrics");
        assert_eq!(status, 405, "{method}: {head}");
        assert!(
            head.to_ascii_lowercase().contains("allow: get, head"),
            "{method}: {head}"
        );
    }
    for path in ["/", "/metricsx", "/metrics/", "/metrics/x", "/favicon.ico"] {
        assert_eq!(http(addr, "GET", path).0, 404, "{path}");
    }
    assert_eq!(http(addr, "POST", "/").0, 404);
    assert_eq!(http(addr, "GET", "/metrics?x=1").0, 200);

    // Oversize heads: one long header, or too many.
    let mut long = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Long: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 64 << 10));
    long.extend(b"\r\n\r\n");
    assert_eq!(status_of(&exchange(addr, &long)), 431);
    let mut many = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        many.extend(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    assert_eq!(status_of(&exchange(addr, &many)), 431);
    // Malformed.
    for junk in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n",
    ] {
        assert_eq!(
            status_of(&exchange(addr, junk)),
            400,
            "{}",
            String::from_utf8_lossy(junk)
        );
    }
    assert_eq!(http(addr, "GET", "/metrics").0, 200, "still serving");
}

#[test]
fn dropping_the_recorder_with_stuck_clients_is_prompt() {
    let _one = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder(Duration::from_millis(50));
    let addr = rec.metrics_addr().unwrap();
    rec.start_run(dir.path()).unwrap();
    publish_phases(&rec, addr, "stuck");
    // One that never reads its answers, one mid-header, one idle.
    let mut greedy = never_reading(addr, 100);
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: ha")
        .unwrap();
    let mut idle = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    drop(rec);
    let took = start.elapsed();
    eprintln!("drop with stuck clients: {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "the recorder's drop waited for its clients: {took:?}"
    );
    for (what, s) in [
        ("greedy", &mut greedy),
        ("half", &mut half),
        ("idle", &mut idle),
    ] {
        let (closed, _) = closed_by_server(s, Duration::from_secs(2));
        assert!(closed, "{what} is closed when the server stops");
    }
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens once the recorder is dropped"
    );
}
