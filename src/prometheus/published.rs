//! What the exposition sink hands the scrapes and the pushes: the last
//! [`Generation`], a snapshot rendered into each encoding only when first
//! asked for it.
//!
//! A publish (every `publish_interval`, at each `end_run`) costs only the
//! [`MetricsSnapshot`]: the text and the protobuf are rendered on the thread
//! that asks (a scrape on `runmetrics-http`, a push on `runmetrics-push`),
//! once per generation and encoding, then shared by every later request for
//! it. So a publish nobody scrapes renders nothing, and a flood of scrapes of
//! one generation renders it once. The collector takes the lock only to swap
//! in the new generation, a reader only to clone the `Arc`: rendering, and
//! dropping an old generation, happen outside it.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::{encode, encode_protobuf, MetricsSnapshot};

/// One publish: its snapshot, and its encodings once rendered.
#[derive(Debug)]
pub(crate) struct Generation {
    snapshot: MetricsSnapshot,
    /// `Config::namespace`, as given (the encoders sanitise it).
    namespace: Arc<str>,
    text: OnceLock<Arc<Vec<u8>>>,
    protobuf: OnceLock<Arc<Vec<u8>>>,
    /// Renders so far: (text, protobuf).
    #[cfg(test)]
    renders: [std::sync::atomic::AtomicUsize; 2],
}

impl Generation {
    pub(crate) fn new(snapshot: MetricsSnapshot, namespace: Arc<str>) -> Generation {
        Generation {
            snapshot,
            namespace,
            text: OnceLock::new(),
            protobuf: OnceLock::new(),
            #[cfg(test)]
            renders: Default::default(),
        }
    }

    /// A generation whose encodings are given, not rendered (nothing
    /// published yet: empty; the server's tests: their bodies).
    fn rendered(text: Vec<u8>, protobuf: Vec<u8>) -> Generation {
        let generation = Generation::new(MetricsSnapshot::default(), Arc::from(""));
        let _ = generation.text.set(Arc::new(text));
        let _ = generation.protobuf.set(Arc::new(protobuf));
        generation
    }

    /// The text exposition, rendered by the first caller.
    pub(crate) fn text(&self) -> Arc<Vec<u8>> {
        self.text
            .get_or_init(|| {
                #[cfg(test)]
                self.count_render(0);
                Arc::new(encode(&self.snapshot, &self.namespace))
            })
            .clone()
    }

    /// The protobuf exposition with native histograms, rendered by the
    /// first caller.
    pub(crate) fn protobuf(&self) -> Arc<Vec<u8>> {
        self.protobuf
            .get_or_init(|| {
                #[cfg(test)]
                self.count_render(1);
                Arc::new(encode_protobuf(&self.snapshot, &self.namespace))
            })
            .clone()
    }

    #[cfg(test)]
    fn count_render(&self, encoding: usize) {
        self.renders[encoding].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How often each encoding was rendered: (text, protobuf).
    #[cfg(test)]
    pub(crate) fn renders(&self) -> (usize, usize) {
        let [t, p] = &self.renders;
        let load =
            |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::Relaxed);
        (load(t), load(p))
    }
}

impl Default for Generation {
    fn default() -> Generation {
        Generation::rendered(Vec::new(), Vec::new())
    }
}

/// The last generation published: written by the collector, read by
/// scrapes and pushes.
#[derive(Debug, Default)]
pub(crate) struct Published(Mutex<Arc<Generation>>);

impl Published {
    /// Makes `generation` what the next scrape sees.
    pub(crate) fn set(&self, generation: Generation) {
        let new = Arc::new(generation);
        let old = std::mem::replace(
            &mut *self.0.lock().unwrap_or_else(PoisonError::into_inner),
            new,
        );
        // Outside the lock: the last reference frees a whole snapshot.
        drop(old);
    }

    /// The last generation published.
    pub(crate) fn get(&self) -> Arc<Generation> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A `Published` serving `text` (and an empty protobuf), not rendered.
    #[cfg(test)]
    pub(crate) fn serving(text: Vec<u8>) -> Published {
        Published(Mutex::new(Arc::new(Generation::rendered(text, Vec::new()))))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    use super::*;
    use crate::prometheus::server::MetricsServer;
    use crate::prometheus::DurationSeries;

    /// One phase series of `count` regions.
    fn snapshot(count: u64) -> MetricsSnapshot {
        MetricsSnapshot {
            bucket_bounds: vec![0.001, 1.0],
            durations: vec![DurationSeries {
                function: false,
                module: "m".into(),
                name: "p".into(),
                buckets: vec![count / 2, count],
                count,
                sum_seconds: 0.25,
                values_ns: vec![(500_000, count / 2), (2_000_000, count - count / 2)],
            }],
            runs_completed: count,
            ..MetricsSnapshot::default()
        }
    }

    /// `GET /metrics` over a real connection, asking for the protobuf or
    /// not: the body.
    fn scrape(addr: SocketAddr, protobuf: bool) -> Vec<u8> {
        let accept = if protobuf {
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
        } else {
            "text/plain"
        };
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.0\r\nHost: t\r\nAccept: {accept}\r\n\r\n"
        )
        .unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        assert!(got.starts_with(b"HTTP/1.0 200"), "{got:?}");
        got.split_off(at + 4)
    }

    #[test]
    fn a_generation_renders_each_encoding_once_however_often_scraped() {
        let published = Arc::new(Published::default());
        published.set(Generation::new(snapshot(4), "t".into()));
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = MetricsServer::start(addr, published.clone()).unwrap();
        let addr = server.local_addr();
        let first = published.get();
        assert_eq!(first.renders(), (0, 0), "a publish renders nothing");
        // A flood of scrapes, of both encodings, from four clients at once.
        let bodies: Vec<(bool, Vec<u8>)> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..4)
                .map(|c| {
                    s.spawn(move || {
                        (0..20)
                            .map(|i| {
                                let protobuf = (c + i) % 2 == 0;
                                (protobuf, scrape(addr, protobuf))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            clients
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect()
        });
        let text = encode(&snapshot(4), "t");
        let protobuf = encode_protobuf(&snapshot(4), "t");
        assert!(String::from_utf8_lossy(&text)
            .contains("t_phase_duration_seconds_count{module=\"m\",phase=\"p\"} 4\n"));
        for (is_protobuf, body) in &bodies {
            assert_eq!(body, if *is_protobuf { &protobuf } else { &text });
        }
        assert_eq!(first.renders(), (1, 1));

        // A new publish: the next scrapes render it anew, each encoding once.
        published.set(Generation::new(snapshot(6), "t".into()));
        let second = published.get();
        assert_eq!(second.renders(), (0, 0));
        for _ in 0..5 {
            assert_eq!(scrape(addr, false), encode(&snapshot(6), "t"));
        }
        assert_eq!(second.renders(), (1, 0));
        for _ in 0..5 {
            assert_eq!(scrape(addr, true), encode_protobuf(&snapshot(6), "t"));
        }
        assert_eq!(second.renders(), (1, 1));
        assert_eq!(first.renders(), (1, 1), "the old generation is left alone");
        // What a push takes is the same text, not rendered again.
        assert_eq!(*second.text(), encode(&snapshot(6), "t"));
        assert_eq!(second.renders(), (1, 1));
    }
}
