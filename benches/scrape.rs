//! Prometheus exposition costs: one scrape of 1 000 series over loopback, and
//! the cost of a region while a client scrapes in a loop, next to the same
//! region with nobody scraping (the recording path must not notice).
//!
//! cargo bench --bench scrape

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use runmetrics::{Config, Recorder};

/// One whole `GET /metrics` response, head included.
fn get_metrics(addr: SocketAddr) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("write");
    let mut body = Vec::with_capacity(1 << 20);
    s.read_to_end(&mut body).expect("read");
    body
}

fn scrape(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("runmetrics-scrape-{}", std::process::id()));
    let rec = Recorder::new(
        Config::new()
            .port(0)
            .publish_interval(Duration::from_millis(100)),
    )
    .expect("recorder");
    let addr = rec.metrics_addr().expect("metrics address");
    rec.start_run(&dir).expect("start_run");
    // 1 000 phase series (each a histogram of 24 buckets + sum + count).
    let names: Vec<String> = (0..1_000).map(|i| format!("phase_{i:04}")).collect();
    for name in &names {
        let _t = rec.phase_dynamic(name, "bench");
    }
    let size = loop {
        std::thread::sleep(Duration::from_millis(50));
        let body = String::from_utf8(get_metrics(addr)).expect("text");
        if body.contains("phase_0999") {
            break body.len();
        }
    };
    eprintln!("exposition of 1 000 phase series: {size} bytes");

    let mut g = c.benchmark_group("prometheus");
    g.bench_function("scrape 1000 series (GET /metrics over loopback)", |b| {
        b.iter(|| black_box(get_metrics(addr).len()))
    });
    g.bench_function("region, nobody scraping", |b| {
        b.iter(|| drop(black_box(rec.phase("p", "bench"))))
    });
    // A scraper every 10 ms (100 scrapes/s, far more than Prometheus does),
    // then one flat out: on a 2-core machine the latter takes a core from the
    // recording thread and the collector, which is CPU contention, not locking.
    for (label, pause) in [
        (
            "region, a client scraping every 10 ms",
            Some(Duration::from_millis(10)),
        ),
        ("region, a client scraping in a tight loop", None),
    ] {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    black_box(get_metrics(addr).len());
                    if let Some(p) = pause {
                        std::thread::sleep(p);
                    }
                }
            });
            g.bench_function(label, |b| {
                b.iter(|| drop(black_box(rec.phase("p", "bench"))))
            });
            stop.store(true, Ordering::Relaxed);
        });
    }
    g.finish();
    let _ = rec.end_run(serde_json::Value::Null);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, scrape);
criterion_main!(benches);
