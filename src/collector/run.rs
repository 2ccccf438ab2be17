//! One open run as the collector keeps it: aggregates per site, the capped
//! event log, process samples and the record accounting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Local};

use super::aggregate::{CountStats, Durations};
use crate::local::ring::Record;
use crate::site::{Kind, SiteInfo};

/// One entry of the event log. Times are nanoseconds since the run's start.
#[derive(Debug)]
pub(crate) enum Event {
    Sample {
        at_ns: u64,
        cpu_percent: f64,
        rss_bytes: u64,
    },
    Timing {
        site: u32,
        thread: u32,
        start_ns: u64,
        end_ns: u64,
        /// Thread CPU ns and RSS change in bytes, for resource-capturing calls.
        resources: Option<(u64, i64)>,
    },
    Counts {
        at_ns: u64,
        thread: u32,
        values: Vec<(u32, i64)>,
    },
}

impl Event {
    /// When the event happened (a region: when it ended).
    pub(crate) fn at_ns(&self) -> u64 {
        match self {
            Event::Sample { at_ns, .. } | Event::Counts { at_ns, .. } => *at_ns,
            Event::Timing { end_ns, .. } => *end_ns,
        }
    }
}

/// Samples whose window is shorter do not count toward `cpu_percent_max`.
pub(crate) const MIN_PEAK_WINDOW_SECONDS: f64 = 0.01;

/// Process CPU and RSS over the run's samples.
#[derive(Debug, Default)]
pub(crate) struct ProcessStats {
    pub(crate) samples: u64,
    pub(crate) cpu_percent_max: f64,
    /// CPU-seconds and wall seconds covered by the samples after the start
    /// sample: their ratio is the time-weighted mean.
    pub(crate) cpu_seconds: f64,
    pub(crate) wall_seconds: f64,
    pub(crate) rss_max_bytes: u64,
}

impl ProcessStats {
    pub(crate) fn cpu_percent_mean(&self) -> f64 {
        if self.wall_seconds > 0.0 {
            100.0 * self.cpu_seconds / self.wall_seconds
        } else {
            0.0
        }
    }
}

/// Where the resources record that may follow a function record should go.
#[derive(Clone, Copy)]
enum Previous {
    None,
    Function { site: u32, event: Option<usize> },
    Counts { at: u64, event: Option<usize> },
}

pub(crate) struct RunState {
    pub(crate) run_id: String,
    pub(crate) path: PathBuf,
    pub(crate) generation: u32,
    pub(crate) started_at: DateTime<Local>,
    /// Raw clock value at the start.
    pub(crate) t0: u64,
    pub(crate) durations: Vec<Option<Durations>>,
    pub(crate) counts: Vec<Option<CountStats>>,
    pub(crate) events: Vec<Event>,
    pub(crate) event_cap: usize,
    pub(crate) events_omitted: u64,
    pub(crate) aggregated: u64,
    pub(crate) dropped: u64,
    pub(crate) outside_run: u64,
    pub(crate) process: ProcessStats,
    pub(crate) threads: BTreeMap<u32, Option<String>>,
    previous: Previous,
}

impl RunState {
    pub(crate) fn new(
        run_id: String,
        path: PathBuf,
        generation: u32,
        t0: u64,
        event_cap: usize,
    ) -> RunState {
        RunState {
            run_id,
            path,
            generation,
            started_at: Local::now(),
            t0,
            durations: Vec::new(),
            counts: Vec::new(),
            events: Vec::new(),
            event_cap,
            events_omitted: 0,
            aggregated: 0,
            dropped: 0,
            outside_run: 0,
            process: ProcessStats::default(),
            threads: BTreeMap::new(),
            previous: Previous::None,
        }
    }

    fn push_event(&mut self, event: Event) -> Option<usize> {
        if self.events.len() < self.event_cap {
            self.events.push(event);
            Some(self.events.len() - 1)
        } else {
            self.events_omitted += 1;
            None
        }
    }

    /// Called before each ring's records: pairs never span two rings.
    pub(crate) fn begin_ring(&mut self) {
        self.previous = Previous::None;
    }

    /// Takes records of one ring, in order. `ns` converts two raw clock values
    /// to the nanoseconds between them; `sites` knows every id's kind.
    pub(crate) fn ingest(
        &mut self,
        thread: u32,
        records: &[Record],
        ns: impl Fn(u64, u64) -> u64,
        sites: &[SiteInfo],
    ) {
        for r in records {
            if r.generation != self.generation {
                if r.site != Record::RESOURCES {
                    self.outside_run += 1;
                }
                continue;
            }
            if r.site == Record::RESOURCES {
                self.attach_resources(r.a, r.b as i64);
                continue;
            }
            self.aggregated += 1;
            let kind = (r.site as usize)
                .checked_sub(1)
                .and_then(|i| sites.get(i))
                .map_or(Kind::Phase, |s| s.kind);
            let index = r.site as usize;
            match kind {
                Kind::Phase | Kind::Function => {
                    let start_ns = ns(self.t0, r.a);
                    let duration = ns(r.a, r.b);
                    slot(&mut self.durations, index)
                        .get_or_insert_with(Durations::new)
                        .record(duration);
                    let event = self.push_event(Event::Timing {
                        site: r.site,
                        thread,
                        start_ns,
                        end_ns: start_ns + duration,
                        resources: None,
                    });
                    self.previous = match kind {
                        Kind::Function => Previous::Function {
                            site: r.site,
                            event,
                        },
                        _ => Previous::None,
                    };
                }
                Kind::Count => {
                    let value = r.b as i64;
                    match slot(&mut self.counts, index) {
                        Some(c) => c.observe(value),
                        empty => *empty = Some(CountStats::new(value)),
                    }
                    let at_ns = ns(self.t0, r.a);
                    self.add_count_event(thread, r.a, at_ns, r.site, value);
                }
            }
        }
    }

    fn add_count_event(&mut self, thread: u32, at: u64, at_ns: u64, site: u32, value: i64) {
        if let Previous::Counts { at: prev, event } = self.previous {
            if prev == at {
                if let Some(Event::Counts { values, .. }) =
                    event.and_then(|i| self.events.get_mut(i))
                {
                    values.push((site, value));
                }
                return;
            }
        }
        let event = self.push_event(Event::Counts {
            at_ns,
            thread,
            values: vec![(site, value)],
        });
        self.previous = Previous::Counts { at, event };
    }

    fn attach_resources(&mut self, cpu_ns: u64, rss_delta: i64) {
        if let Previous::Function { site, event } = self.previous {
            if let Some(Some(d)) = self.durations.get_mut(site as usize) {
                d.add_resources(cpu_ns, rss_delta);
            }
            if let Some(Event::Timing { resources, .. }) =
                event.and_then(|i| self.events.get_mut(i))
            {
                *resources = Some((cpu_ns, rss_delta));
            }
        }
        self.previous = Previous::None;
    }

    /// Adds a process sample taken `at_ns` after the start. `window` is the
    /// wall time the CPU figure covers, `None` for the start sample (whose
    /// window lies before the run, so it counts for RSS only).
    pub(crate) fn add_sample(
        &mut self,
        at_ns: u64,
        cpu_percent: f64,
        rss_bytes: u64,
        window: Option<f64>,
    ) {
        let p = &mut self.process;
        p.samples += 1;
        p.rss_max_bytes = p.rss_max_bytes.max(rss_bytes);
        if let Some(seconds) = window {
            // A window of a few microseconds (two samples in a row) says
            // little about the peak; it still counts toward the mean.
            if seconds >= MIN_PEAK_WINDOW_SECONDS {
                p.cpu_percent_max = p.cpu_percent_max.max(cpu_percent);
            }
            p.cpu_seconds += cpu_percent / 100.0 * seconds;
            p.wall_seconds += seconds;
        }
        self.push_event(Event::Sample {
            at_ns,
            cpu_percent,
            rss_bytes,
        });
    }
}

fn slot<T>(v: &mut Vec<Option<T>>, index: usize) -> &mut Option<T> {
    if v.len() <= index {
        v.resize_with(index + 1, || None);
    }
    &mut v[index]
}
