//! The sink seam with a real additional sink: a recorder built with one
//! more `Sink`, which keeps what the views and events it is handed say,
//! checked against `Instant`-bracketed work and against the run file's
//! events.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Recorder;
use crate::collector::sink::{EndAnswer, Event, RunView, Sink, View, Write};
use crate::config::{Config, Events};
use crate::site::{by_id, SiteInfo};

/// What the test sink saw.
#[derive(Default, Debug)]
struct Seen {
    /// `(run open, regions of the phase, its total ns)` per refresh.
    refreshes: Vec<(bool, u64)>,
    dues: u64,
    samples: u64,
    /// `ended` of each write asked for.
    writes: Vec<bool>,
    /// The closed run's id, count and total ns of the phase.
    closed: Option<(String, u64, u64)>,
    /// The phase's events streamed (`Sink::events`), their times in order,
    /// and those still held at the final write.
    streamed: u64,
    streamed_in_order: bool,
    last_streamed_ns: u64,
    held_at_end: u64,
    ended_path: Option<PathBuf>,
}

/// A sink that keeps figures of one phase, wants `due` every 5 ms, and,
/// when `fail_write`, fails the first final write it is asked for.
struct Probe {
    seen: Arc<Mutex<Seen>>,
    phase: &'static str,
    next: Option<Instant>,
    fail_write: bool,
}

impl Probe {
    /// Events of the phase among `events`.
    fn phase_events(&self, events: &[Event], sites: &[SiteInfo]) -> u64 {
        let of_phase = |e: &&Event| match e {
            Event::Timing { site, .. } => {
                by_id(sites, *site as usize).is_some_and(|s| &*s.name == self.phase)
            }
            _ => false,
        };
        events.iter().filter(of_phase).count() as u64
    }

    fn phase_figures(&self, run: &RunView<'_>, sites: &[SiteInfo]) -> (u64, u64) {
        let mut out = (0, 0);
        for (id, d) in run.durations.iter().enumerate() {
            let (Some(d), Some(site)) = (d, by_id(sites, id)) else {
                continue;
            };
            if &*site.name == self.phase {
                let stats = d.stats(&run.scale);
                out = (stats.count, stats.total_ns);
            }
        }
        out
    }
}

impl Sink for Probe {
    fn next_due(&self) -> Option<Instant> {
        self.next
    }

    fn due(&mut self, _view: &View<'_>, now: Instant) {
        self.seen.lock().unwrap().dues += 1;
        self.next = Some(now + Duration::from_millis(5));
    }

    fn refresh(&mut self, view: &View<'_>) {
        let count = view
            .run
            .as_ref()
            .map_or(0, |r| self.phase_figures(r, view.sites).0);
        let open = view.run.is_some();
        self.seen.lock().unwrap().refreshes.push((open, count));
    }

    fn sampled(&mut self, _cpu_percent: Option<f64>, _rss_bytes: u64) {
        self.seen.lock().unwrap().samples += 1;
    }

    fn events(
        &mut self,
        _run: &RunView<'_>,
        sites: &[SiteInfo],
        events: &[Event],
    ) -> Option<std::io::Result<()>> {
        let n = self.phase_events(events, sites);
        let mut seen = self.seen.lock().unwrap();
        seen.streamed += n;
        for e in events {
            seen.streamed_in_order &= e.at_ns() >= seen.last_streamed_ns;
            seen.last_streamed_ns = e.at_ns();
        }
        None
    }

    fn write(&mut self, view: &View<'_>, what: Write<'_>) -> Option<std::io::Result<()>> {
        if what.ended {
            let held = view
                .run
                .as_ref()
                .map_or(0, |r| self.phase_events(r.events.held(), view.sites));
            self.seen.lock().unwrap().held_at_end = held;
        }
        self.seen.lock().unwrap().writes.push(what.ended);
        if what.ended && std::mem::take(&mut self.fail_write) {
            return Some(Err(std::io::Error::other("the probe refuses")));
        }
        None
    }

    fn run_closed(&mut self, run: &RunView<'_>, sites: &[SiteInfo]) {
        let (count, total) = self.phase_figures(run, sites);
        self.seen.lock().unwrap().closed = Some((run.run_id.to_owned(), count, total));
    }

    fn run_ended(&mut self, view: &View<'_>, path: &Path, _answer: &mut Option<EndAnswer>) {
        assert!(view.run.is_none(), "the run left the collector");
        self.seen.lock().unwrap().ended_path = Some(path.to_owned());
    }
}

fn probe(fail_write: bool) -> (Arc<Mutex<Seen>>, Box<dyn Sink>) {
    let seen = Arc::new(Mutex::new(Seen {
        streamed_in_order: true,
        ..Seen::default()
    }));
    let sink = Probe {
        seen: seen.clone(),
        phase: "seam-probe",
        next: Some(Instant::now()),
        fail_write,
    };
    (seen, Box::new(sink))
}

/// Spins for about `d`.
fn work(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn an_added_sink_sees_the_run_as_the_clock_and_the_file_do() {
    let dir = tempfile::tempdir().unwrap();
    let (seen, sink) = probe(false);
    let config = Config::new()
        .events(Events::All)
        .poll_interval(Duration::from_millis(1))
        .sample_interval(Duration::from_millis(10));
    let rec = Recorder::with_sinks(config, vec![sink]).unwrap();
    let run_id = rec.start_run(dir.path()).unwrap();
    const N: u64 = 40;
    let (mut inner, mut outer) = (Duration::ZERO, Duration::ZERO);
    for i in 0..N {
        if i == N / 2 {
            // Drains go by: the first half's events are streamed.
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = Instant::now();
        {
            let _p = rec.phase("seam-probe", "seam");
            let i = Instant::now();
            work(Duration::from_micros(500));
            inner += i.elapsed();
        }
        outer += o.elapsed();
    }
    let path = rec.end_run(serde_json::Value::Null).unwrap();
    let seen = seen.lock().unwrap();

    // The closed run's view: every region, its time between the work's and
    // the bracket's (Instant), within the scale's error.
    let (id, count, total_ns) = seen.closed.clone().expect("the run was closed");
    assert_eq!(id, run_id);
    assert_eq!(count, N);
    let (inner, outer) = (inner.as_nanos() as f64, outer.as_nanos() as f64);
    let total = total_ns as f64;
    assert!(
        total >= inner * 0.999 && total <= outer * 1.001,
        "view total {total} ns outside [{inner}, {outer}] (Instant)"
    );

    // The same as the run file's events say.
    let text = std::fs::read_to_string(&path).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events: Vec<&serde_json::Value> = file["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["phase"] == "seam-probe")
        .collect();
    assert_eq!(events.len() as u64, count);
    let file_ns: f64 = events
        .iter()
        .map(|e| e["duration_seconds"].as_f64().unwrap() * 1e9)
        .sum();
    assert!(
        (file_ns - total).abs() <= 1e-6 * total + N as f64,
        "events sum {file_ns} ns, view {total} ns"
    );

    // Every event went to the sinks once, streamed in time order or held
    // to the final write, and the file lists each.
    assert!(seen.streamed > 0, "{seen:?}");
    assert!(seen.streamed_in_order, "{seen:?}");
    assert_eq!(seen.streamed + seen.held_at_end, N, "{seen:?}");

    // Refreshed at the run's start (open, nothing yet) and once it left.
    assert_eq!(seen.refreshes.first(), Some(&(true, 0)), "{seen:?}");
    assert_eq!(seen.refreshes.last(), Some(&(false, 0)), "{seen:?}");
    // Asked to write the final file once, told where it went, sampled at
    // least at the start and the end, and woken on its own deadline.
    assert_eq!(seen.writes, vec![true]);
    assert_eq!(seen.ended_path.as_deref(), Some(path.as_path()));
    assert!(seen.samples >= 2, "{seen:?}");
    assert!(seen.dues >= 2, "{seen:?}");
}

#[test]
fn a_sinks_failed_write_fails_end_run_and_keeps_the_run_open() {
    let dir = tempfile::tempdir().unwrap();
    let (seen, sink) = probe(true);
    let rec = Recorder::with_sinks(Config::new(), vec![sink]).unwrap();
    rec.start_run(dir.path()).unwrap();
    {
        let _p = rec.phase("seam-probe", "seam");
    }
    let failed = rec.end_run(serde_json::Value::Null);
    assert!(
        matches!(failed, Err(crate::EndRunError::WriteRunFile { .. })),
        "{failed:?}"
    );
    assert!(rec.is_run_open());
    assert!(seen.lock().unwrap().closed.is_none());
    // The next try succeeds and its file counts the failure.
    let path = rec.end_run(serde_json::Value::Null).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(file["meta"]["write_failures"], 1);
    assert!(file["meta"]["last_write_error"]
        .as_str()
        .unwrap()
        .contains("the probe refuses"));
    assert_eq!(seen.lock().unwrap().writes, vec![true, true]);
    assert_eq!(seen.lock().unwrap().closed.as_ref().map(|c| c.1), Some(1));
}
