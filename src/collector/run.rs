//! One open run as the collector keeps it: aggregates per site, the event
//! log, process samples and the record accounting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};

use super::aggregate::{CountStats, Durations};
use super::events::{Event, EventLog};
use super::histogram::duration_ns;
use super::sampler::Sample;
use super::sink::RunView;
use crate::config::Events;
use crate::local::counts::CountDelta;
use crate::local::ring::Record;
use crate::local::tally::Delta;
use crate::site::{by_id, Kind, SiteInfo};
use crate::slot::slot;
use crate::ticks::{Pair, Scale};

/// Process CPU and RSS over the run's samples. The CPU figures are over the
/// samples that end a window (`Sample::ends_window`, a window longer than
/// zero): their windows follow one another from the start sample on, so the
/// mean, time-weighted, is never above the max.
#[derive(Debug, Default)]
pub(crate) struct ProcessStats {
    pub(crate) samples: u64,
    /// Samples whose window counts.
    pub(crate) windows: u64,
    pub(crate) cpu_percent_max: f64,
    /// CPU seconds and wall seconds of the windows that count: their ratio
    /// is the time-weighted mean.
    pub(crate) cpu_seconds: f64,
    pub(crate) wall_seconds: f64,
    pub(crate) rss_max_bytes: u64,
}

impl ProcessStats {
    /// The CPU seconds used over the counted windows per wall second, in
    /// percent. A weighted mean of the windows' percents, so at most their
    /// max: the `min` only undoes rounding.
    pub(crate) fn cpu_percent_mean(&self) -> f64 {
        if self.wall_seconds > 0.0 {
            (100.0 * self.cpu_seconds / self.wall_seconds).min(self.cpu_percent_max)
        } else {
            0.0
        }
    }
}

/// Where the resources record that may follow a function record should go,
/// and which counts event a count with the same timestamp joins.
#[derive(Clone, Copy)]
enum Previous {
    None,
    Function { site: u32, event: Option<usize> },
    Counts { at: u64, event: Option<usize> },
}

pub(crate) struct RunState {
    pub(crate) run_id: String,
    pub(crate) path: PathBuf,
    /// The wall clock at the start, in its offset from UTC then.
    pub(crate) started_at: DateTime<FixedOffset>,
    /// Raw clock value at the start: event times count from here.
    pub(crate) t0: u64,
    /// The monotonic clock at `t0`.
    start_at: std::time::Instant,
    /// Converts every raw value of the run (measured at its start).
    pub(crate) scale: Scale,
    /// Raw clock value before which a record belongs to an earlier run: `t0`,
    /// except after a rotation, which keeps the first run's (a region that
    /// spans the boundary belongs to the run that collects it).
    pub(crate) accept_from: u64,
    /// The run this one continues after a rotation.
    pub(crate) previous_run_id: Option<String>,
    pub(crate) durations: Vec<Option<Durations>>,
    pub(crate) counts: Vec<Option<CountStats>>,
    /// The count epoch this run's min and max of count values are of.
    pub(crate) count_epoch: u64,
    pub(crate) events: EventLog,
    /// Regions counted by the threads' tallies, and how many of their events
    /// reached the collector (kept or refused).
    tallied: u64,
    tallied_events: u64,
    pub(crate) aggregated: u64,
    pub(crate) dropped: u64,
    pub(crate) outside_run: u64,
    pub(crate) process: ProcessStats,
    pub(crate) threads: BTreeMap<u32, Option<String>>,
    /// The durations as the run file last written had them, and when (ns
    /// since the start): the base of the window the next file reports.
    window_base: Vec<Option<Durations>>,
    pub(crate) window_start_ns: u64,
    /// Writes of the run file that failed (snapshots or `end_run`), and the last cause.
    pub(crate) write_failures: u64,
    pub(crate) last_write_error: Option<String>,
    previous: Previous,
    /// The first half of a two-slot record whose extension is next.
    pending: Option<Record>,
}

impl RunState {
    /// A run from `start` on, its raw values converted by `scale`.
    pub(crate) fn new(
        run_id: String,
        path: PathBuf,
        start: Pair,
        scale: Scale,
        events: Events,
    ) -> RunState {
        RunState {
            events: EventLog::new(events),
            run_id,
            path,
            started_at: crate::wall_clock::now().fixed_offset(),
            t0: start.raw,
            start_at: start.at,
            scale,
            accept_from: start.raw,
            previous_run_id: None,
            durations: Vec::new(),
            counts: Vec::new(),
            count_epoch: 0,
            tallied: 0,
            tallied_events: 0,
            aggregated: 0,
            dropped: 0,
            outside_run: 0,
            process: ProcessStats::default(),
            threads: BTreeMap::new(),
            window_base: Vec::new(),
            window_start_ns: 0,
            write_failures: 0,
            last_write_error: None,
            previous: Previous::None,
            pending: None,
        }
    }

    /// The run that follows `previous` after a rotation, from `start` on.
    /// The chain keeps one wall-clock reading: this run starts where the
    /// monotonic clock says, whatever the wall clock did meanwhile (and no
    /// run's scale error carries into the next's start).
    pub(crate) fn after(
        previous: &RunState,
        run_id: String,
        path: PathBuf,
        start: Pair,
        scale: Scale,
    ) -> RunState {
        let mut run = RunState::new(run_id, path, start, scale, previous.events.mode);
        let since = start.at.saturating_duration_since(previous.start_at);
        run.started_at = crate::wall_clock::after(
            previous.started_at,
            since.as_nanos().min(u128::from(u64::MAX)) as u64,
        );
        run.accept_from = previous.accept_from;
        run.previous_run_id = Some(previous.run_id.clone());
        run
    }

    /// Whether the event log takes no more events: regions need not send them.
    pub(crate) fn events_full(&self) -> bool {
        self.events.full()
    }

    /// Events the file does not list: those the event mode left out or a
    /// failed write of the events file lost, and the events of tallied
    /// regions that never reached the collector (sent after the log took no
    /// more, or lost to a full ring).
    pub(crate) fn events_omitted(&self) -> u64 {
        self.events.omitted() + self.tallied.saturating_sub(self.tallied_events)
    }

    /// The plain view of this run that sinks read, taken `now_ns` after
    /// its start.
    pub(crate) fn view(&self, now_ns: u64) -> RunView<'_> {
        RunView {
            run_id: &self.run_id,
            path: &self.path,
            started_at: self.started_at,
            scale: self.scale,
            now_ns,
            durations: &self.durations,
            window_base: &self.window_base,
            window_start_ns: self.window_start_ns,
            counts: &self.counts,
            events: &self.events,
            events_omitted: self.events_omitted(),
            aggregated: self.aggregated,
            dropped: self.dropped,
            outside_run: self.outside_run,
            process: &self.process,
            threads: &self.threads,
            write_failures: self.write_failures,
            last_write_error: self.last_write_error.as_deref(),
            previous_run_id: self.previous_run_id.as_deref(),
        }
    }

    /// The run file was written with what the run holds at `at_ns`: the
    /// next window starts here.
    pub(crate) fn written(&mut self, at_ns: u64) {
        self.window_base.clone_from(&self.durations);
        self.window_start_ns = at_ns;
    }

    /// Writing the run file failed: counted, and the cause kept for the next
    /// file that is written.
    pub(crate) fn write_failed(&mut self, error: &std::io::Error) {
        self.write_failures += 1;
        self.last_write_error = Some(error.to_string());
    }

    /// Adds the count values one thread aggregated since the collector
    /// last looked. Values of an earlier run (the last one's time is before
    /// the run) are outside it; values from before a rotation, still in
    /// the earlier epoch, give their min and max only by the last one.
    pub(crate) fn add_counts(&mut self, d: &CountDelta) {
        if d.at < self.accept_from {
            self.outside_run += d.new;
            return;
        }
        self.aggregated += d.new;
        self.tallied += d.new;
        let (min, max) = if d.epoch == self.count_epoch {
            (d.min, d.max)
        } else {
            (d.last, d.last)
        };
        match slot(&mut self.counts, d.site as usize) {
            Some(c) => c.merge(d.new, d.last, d.at, min, max),
            empty => {
                *empty = Some(CountStats {
                    last: d.last,
                    last_at: d.at,
                    min,
                    max,
                    observations: d.new,
                })
            }
        }
    }

    /// Adds what one thread's tally counted since the collector last looked.
    pub(crate) fn add_delta(&mut self, delta: &Delta) {
        let n = delta.count();
        slot(&mut self.durations, delta.site as usize)
            .get_or_insert_with(Durations::new)
            .add_delta(delta);
        self.aggregated += n;
        self.tallied += n;
    }

    /// Called before each ring's records: pairs never span two rings.
    pub(crate) fn begin_ring(&mut self) {
        self.previous = Previous::None;
        self.pending = None;
    }

    /// Takes records of one ring, in order.
    pub(crate) fn ingest(&mut self, records: &[Record], from: Source<'_>) {
        for r in records {
            if let Some(first) = self.pending.take() {
                if r.site == Record::EXTENSION {
                    self.complete(first, r.a, from);
                    continue;
                }
            }
            match r.site_id() {
                None if r.site == Record::RESOURCES => {
                    self.attach_resources(r.a, r.b as i32 as i64 * 1024);
                }
                None => {}
                Some(site) => match kind_of(from.sites, site) {
                    Kind::Count => self.pending = Some(*r),
                    _ if r.b == Record::LONG => self.pending = Some(*r),
                    kind => self.timing(r.site, kind, r.a, r.a + r.b as u64, from),
                },
            }
        }
    }

    fn complete(&mut self, first: Record, ext: u64, from: Source<'_>) {
        let site = first.site_id().unwrap_or(first.site);
        match kind_of(from.sites, site) {
            Kind::Count => self.count(from.thread, first.site, first.a, ext as i64),
            kind => self.timing(first.site, kind, first.a, ext, from),
        }
    }

    /// A region's record: its event, and its duration unless its thread's
    /// tally already counted it (`site` has [`Record::TALLIED`]).
    fn timing(&mut self, site: u32, kind: Kind, start: u64, end: u64, from: Source<'_>) {
        let tallied = site & Record::TALLIED != 0;
        let site = site & !Record::TALLIED;
        if start < self.accept_from {
            if !tallied {
                self.outside_run += 1;
            }
            self.previous = Previous::None;
            return;
        }
        let thread = from.thread;
        let ticks = end.saturating_sub(start);
        // In its bucket's range: the event says what the histogram counts.
        let duration = duration_ns(&self.scale, ticks);
        let durations = slot(&mut self.durations, site as usize).get_or_insert_with(Durations::new);
        if tallied {
            self.tallied_events += 1;
        } else {
            durations.record(ticks);
            self.aggregated += 1;
        }
        // From the end: a region that spans a rotation starts at 0 (its
        // event keeps its whole duration).
        let end_ns = self.scale.delta(self.t0, end);
        let event = self.events.offer(Event::Timing {
            site,
            thread,
            duration_ns: duration,
            end_ns,
            resources: None,
        });
        self.previous = match kind {
            Kind::Function => Previous::Function { site, event },
            _ => Previous::None,
        };
    }

    /// A count value's record: its event, and the value unless its
    /// thread's count aggregates took it (`site` has [`Record::TALLIED`]).
    fn count(&mut self, thread: u32, site: u32, at: u64, value: i64) {
        let tallied = site & Record::TALLIED != 0;
        let site = site & !Record::TALLIED;
        if at < self.accept_from {
            if !tallied {
                self.outside_run += 1;
            }
            return;
        }
        if tallied {
            self.tallied_events += 1;
        } else {
            self.aggregated += 1;
            match slot(&mut self.counts, site as usize) {
                Some(c) => c.observe(value, at),
                empty => *empty = Some(CountStats::new(value, at)),
            }
        }
        if let Previous::Counts { at: prev, event } = self.previous {
            if prev == at {
                if let Some(Event::Counts { values, .. }) =
                    event.and_then(|i| self.events.held_mut(i))
                {
                    values.push((site, value));
                }
                return;
            }
        }
        let at_ns = self.scale.delta(self.t0, at);
        let event = self.events.offer(Event::Counts {
            at_ns,
            thread,
            values: vec![(site, value)],
        });
        self.previous = Previous::Counts { at, event };
    }

    fn attach_resources(&mut self, cpu_ns: u64, rss_delta: i64) {
        if let Previous::Function { site, event } = self.previous {
            slot(&mut self.durations, site as usize)
                .get_or_insert_with(Durations::new)
                .add_resources(cpu_ns, rss_delta);
            if let Some(Event::Timing { resources, .. }) =
                event.and_then(|i| self.events.held_mut(i))
            {
                *resources = Some((cpu_ns, rss_delta));
            }
        }
        self.previous = Previous::None;
    }

    /// Adds a process sample taken `at_ns` after the start. Its window
    /// counts toward the CPU figures if it ended there and is longer than
    /// zero (the start sample's is zero).
    pub(crate) fn add_sample(&mut self, at_ns: u64, s: &Sample) {
        let p = &mut self.process;
        p.samples += 1;
        p.rss_max_bytes = p.rss_max_bytes.max(s.rss_bytes);
        if s.ends_window && s.window_seconds > 0.0 {
            p.windows += 1;
            p.cpu_percent_max = p.cpu_percent_max.max(s.cpu_percent);
            p.cpu_seconds += s.cpu_seconds;
            p.wall_seconds += s.window_seconds;
        }
        self.events.offer(Event::Sample {
            at_ns,
            cpu_percent: s.cpu_percent,
            rss_bytes: s.rss_bytes,
            window_seconds: s.window_seconds,
        });
    }
}

/// Where a ring's records come from, and what reading them needs.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) thread: u32,
    /// Knows every id's kind.
    pub(crate) sites: &'a [SiteInfo],
}

fn kind_of(sites: &[SiteInfo], site: u32) -> Kind {
    by_id(sites, site as usize).map_or(Kind::Phase, |s| s.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::{intern, Kind};

    /// A run from raw 1 000 on, at 0.5 ns a tick.
    fn test_run() -> RunState {
        let start = Pair {
            raw: 1_000,
            at: std::time::Instant::now(),
        };
        RunState::new(
            "r".into(),
            "r.json".into(),
            start,
            Scale::fixed(0.5),
            Events::First(100),
        )
    }

    fn sites() -> Vec<SiteInfo> {
        let mut v = Vec::new();
        crate::site::copy_new_sites(&mut v);
        v
    }

    #[test]
    fn two_slot_records_survive_a_chunk_boundary() {
        let phase = intern(Kind::Phase, "run_test", "long");
        let count = intern(Kind::Count, "run_test_count", "");
        let sites = sites();
        let mut run = test_run();
        let from = Source {
            thread: 0,
            sites: &sites,
        };
        let long = 1u64 << 40;
        let (records, n) = Record::region(phase, 2_000, 2_000 + long);
        assert_eq!(n, 2);
        run.begin_ring();
        // The pair arrives in two chunks, as a drain may hand it over.
        run.ingest(&records[..1], from);
        run.ingest(&records[1..], from);
        let value = Record {
            a: (-7i64) as u64,
            b: 0,
            site: Record::EXTENSION,
        };
        let at = Record {
            a: 3_000,
            b: 0,
            site: count,
        };
        run.ingest(&[at], from);
        run.ingest(&[value], from);
        let d = run.durations[phase as usize]
            .as_ref()
            .unwrap()
            .stats(&run.scale);
        assert_eq!(d.count, 1);
        assert_eq!(d.total_ns, (long as f64 * 0.5) as u64);
        assert_eq!(run.counts[count as usize].unwrap().last, -7);
        assert_eq!(run.aggregated, 2);
    }

    #[test]
    fn records_from_before_the_run_are_outside_it() {
        let phase = intern(Kind::Phase, "run_test_early", "m");
        let sites = sites();
        let mut run = test_run();
        let from = Source {
            thread: 0,
            sites: &sites,
        };
        run.begin_ring();
        let early = Record {
            a: 999,
            b: 5,
            site: phase,
        };
        run.ingest(&[early], from);
        assert_eq!((run.aggregated, run.outside_run), (0, 1));
        assert!(run.events.held().is_empty());
    }
}
