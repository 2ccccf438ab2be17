//! The metrics server survives garbage and load, and recording goes on
//! meanwhile.
#![cfg(feature = "prometheus")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::http;
use runmetrics::{Config, Recorder};
use serde_json::Value;

fn send_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn garbage_load_and_idle_clients_do_not_stop_serving_or_recording() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new(Config::new().port(0)).unwrap();
    let addr = rec.metrics_addr().unwrap();
    rec.start_run(dir.path()).unwrap();
    let stop = AtomicBool::new(false);
    let recorded = AtomicU64::new(0);
    std::thread::scope(|s| {
        // Recording goes on throughout.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let _t = rec.phase("busy", "garbage");
                recorded.fetch_add(1, Ordering::Relaxed);
            }
        });
        // A client that connects and sends nothing, held open.
        let idle = TcpStream::connect(addr).unwrap();

        // Malformed request lines and a huge header.
        for junk in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"\x00\x01\x02\xff\r\n\r\n",
            b"GET /metrics HTTP/9.9\r\n\r\n",
        ] {
            let _ = send_raw(addr, junk);
        }
        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Huge: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 1 << 20));
        huge.extend(b"\r\n\r\n");
        let _ = send_raw(addr, &huge);

        // 1 000 requests from 20 concurrent clients.
        let ok = AtomicU64::new(0);
        std::thread::scope(|c| {
            for _ in 0..20 {
                c.spawn(|| {
                    for _ in 0..50 {
                        if http(addr, "GET", "/metrics").0 == 200 {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(ok.load(Ordering::Relaxed), 1_000);
        assert_eq!(
            http(addr, "GET", "/metrics").0,
            200,
            "still serving after the garbage"
        );
        drop(idle);
        stop.store(true, Ordering::Relaxed);
    });
    let path = rec.end_run(Value::Null).unwrap();
    let file = common::read_run_file(path);
    let meta = &file["meta"];
    let made = recorded.load(Ordering::Relaxed);
    assert!(made > 1_000, "recording kept going: {made}");
    assert_eq!(meta["records_issued"].as_u64().unwrap(), made);
    assert_eq!(
        meta["records_aggregated"].as_u64().unwrap() + meta["records_dropped"].as_u64().unwrap(),
        made
    );
}
