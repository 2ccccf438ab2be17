//! The collector side: one named thread per recorder that drains every
//! thread's ring, owns the aggregates and the event log of the open run, takes
//! process samples, and hands a plain view of its figures to the sinks
//! (`sink.rs`), which it knows only as `dyn Sink`.

pub(crate) mod aggregate;
pub(crate) mod events;
pub(crate) mod histogram;
pub(crate) mod run;
pub(crate) mod sampler;
pub(crate) mod sink;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::config::Config;
use crate::error::{EndRunError, FlushError, StartRunError};
use crate::local::ring::{Record, Ring};
use crate::run_id::free_run_path;
use crate::shared::Shared;
use crate::site::{copy_new_sites, SiteInfo};
use run::{RunState, Source};
use sampler::Sampler;
use sink::{EndAnswer, Request, Sink, View, Write};

/// What the API sends the collector. Replies come back on the enclosed channel.
pub(crate) enum Command {
    StartRun {
        run_id: String,
        path: PathBuf,
        reply: Sender<Result<(), StartRunError>>,
    },
    EndRun {
        extra_meta: serde_json::Map<String, serde_json::Value>,
        reply: Sender<Result<PathBuf, EndRunError>>,
    },
    /// Write a snapshot of the open run now.
    Flush {
        reply: Sender<Result<PathBuf, FlushError>>,
    },
    /// A request for whichever sink takes it (`Sink::request`); only the
    /// sinks some builds leave out make one (the pusher's).
    #[allow(dead_code)]
    ToSinks(Request),
    Shutdown,
}

/// The sinks the collector feeds, in the order it calls them (the run-file
/// writer first), as the recorder built them.
pub(crate) type Sinks = Vec<Box<dyn Sink>>;

/// Starts the `runmetrics-collector` thread.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    config: Config,
    commands: Receiver<Command>,
    wake: Receiver<()>,
    sinks: Sinks,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("runmetrics-collector".to_owned())
        .spawn(move || {
            let _gone = Gone(shared.clone());
            Collector::new(shared, config, sinks).run(&commands, &wake);
        })
}

/// Marks the collector gone however its thread ends (a panic included), so
/// blocked producers stop waiting.
struct Gone(Arc<Shared>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.set_collector_gone();
    }
}

/// A drain of at least this many records means some thread is recording
/// fast: the next look comes after [`BUSY_POLL`] instead of `poll_interval`.
const BUSY_DRAIN: u64 = 4_096;
const BUSY_POLL: Duration = Duration::from_micros(200);
/// How many more drains `end_run` makes while a thread is caught counting.
const SETTLE_TRIES: u32 = 100;
/// The tallies' pass (every thread's region and count aggregates) between
/// the full ones (see [`Collector::tallies_period`]) reads the tallies
/// every `poll_interval` while it finds at most this many sites moved, and
/// proportionally less often beyond: each moved site it reads takes its
/// lines from the recording core, whose next region there waits for them
/// to come back.
const SITES_PER_POLL: u64 = 256;
/// The longest the pass waits, in `poll_interval`s (1 s by default).
const MAX_STRETCH: u64 = 100;

/// `from + after`, or `None` (never) when that is past what `Instant` can
/// hold: every interval setting may be as long as `Duration::MAX`.
pub(crate) fn deadline(from: Instant, after: Duration) -> Option<Instant> {
    from.checked_add(after)
}

/// Which tallies a [`Collector::drain`] reads: the rings it drains
/// whatever this says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tallies {
    /// Every thread's, now: the figures are about to be shown (a run file,
    /// a publish, a command), so they must hold every region ended before.
    All,
    /// Every thread's when the pass is due, else those of exited threads
    /// only (their rings leave the registry once read).
    WhenDue,
}

/// What one [`Collector::drain`] found.
struct Drained {
    /// Records the rings held.
    records: u64,
    /// Every thread was between regions (see `Tally::collect`).
    settled: bool,
}

/// Reads `ring`'s region and count tallies into `run` (between runs,
/// counted in `outside`): whether they were settled, and how many sites'
/// news they held. After the ring's drain: a tallied region's event record
/// was published after its count, so this sees every count whose event the
/// drain took.
fn collect_tallies(
    ring: &Ring,
    run: &mut Option<RunState>,
    sites: &mut Vec<SiteInfo>,
    outside: &mut u64,
) -> (bool, u64) {
    let mut collected = 0;
    let regions = ring.tally.collect(|delta| match run.as_mut() {
        Some(run) => {
            // A site whose regions all stayed in the tally (no event sent)
            // is named here first.
            if delta.site as usize > sites.len() {
                copy_new_sites(sites);
            }
            collected += 1;
            run.add_delta(delta);
        }
        None => *outside += delta.count(),
    });
    // Count values, aggregated on their thread like regions.
    let counts = ring.counts.collect(|delta| match run.as_mut() {
        Some(run) => {
            if delta.site as usize > sites.len() {
                copy_new_sites(sites);
            }
            collected += 1;
            run.add_counts(delta);
        }
        None => *outside += delta.new,
    });
    (regions && counts, collected)
}

struct Collector {
    shared: Arc<Shared>,
    config: Config,
    sites: Vec<SiteInfo>,
    rings: Vec<Arc<Ring>>,
    run: Option<RunState>,
    sampler: Sampler,
    /// The next periodic sample of the open run (`None`: never).
    next_sample: Option<Instant>,
    /// The next periodic snapshot of the open run (with `flush_interval`).
    next_flush: Option<Instant>,
    /// When the open run ends and the next begins (with `rotate_every`).
    next_rotate: Option<Instant>,
    /// When the next pass over the tallies is due in a drain that does
    /// not need them all (`None`: at the next drain).
    next_tallies: Option<Instant>,
    /// Orphaned records already accounted for.
    orphaned_seen: u64,
    /// Records that arrived while no run was open (they outlived their run).
    outside_between_runs: u64,
    sinks: Sinks,
}

impl Collector {
    fn new(shared: Arc<Shared>, config: Config, sinks: Sinks) -> Collector {
        Collector {
            shared,
            config,
            sites: Vec::new(),
            rings: Vec::new(),
            run: None,
            sampler: Sampler::new(),
            next_sample: None,
            next_flush: None,
            next_rotate: None,
            next_tallies: None,
            orphaned_seen: 0,
            outside_between_runs: 0,
            sinks,
        }
    }

    /// The sinks' view of the collector's figures now, and the sinks.
    fn view(&mut self) -> (View<'_>, &mut Sinks) {
        let raw = self.shared.clock.raw();
        let view = View {
            sites: &self.sites,
            config: &self.config,
            run: self.run.as_ref().map(|r| r.view(r.scale.delta(r.t0, raw))),
        };
        (view, &mut self.sinks)
    }

    /// The one schedule: when the collector next wakes by itself — the
    /// open run's next poll, sample, snapshot and rotation, and each
    /// sink's own deadline (`None`: only when told something).
    fn next_wake(&self, now: Instant, poll: Duration) -> Option<Instant> {
        // A deadline past what the clock can hold is never.
        let run_wake = self.run.as_ref().map(|_| {
            [
                self.next_sample,
                deadline(now, poll),
                self.next_flush,
                self.next_rotate,
            ]
        });
        run_wake
            .into_iter()
            .flatten()
            .chain(self.sinks.iter().map(|s| s.next_due()))
            .flatten()
            .min()
    }

    /// Does what the schedule says is due: the run's sample, rotation and
    /// snapshot, then each sink whose deadline has passed.
    fn run_due(&mut self) {
        if self.run.is_some() && self.next_sample.is_some_and(|at| Instant::now() >= at) {
            self.sample(false);
        }
        if self.next_rotate.is_some_and(|at| Instant::now() >= at) {
            self.rotate();
        }
        if self.next_flush.is_some_and(|at| Instant::now() >= at) {
            // Periodic snapshots are best effort: a failure is counted in
            // the next file that is written, and the next one retries.
            let _ = self.flush();
        }
        let now = Instant::now();
        if self
            .sinks
            .iter()
            .any(|s| s.next_due().is_some_and(|at| now >= at))
        {
            // A publish or a push shows every region ended before it.
            self.drain(Tallies::All);
            let (view, sinks) = self.view();
            for sink in sinks.iter_mut() {
                if sink.next_due().is_some_and(|at| now >= at) {
                    sink.due(&view, now);
                }
            }
        }
    }

    /// Tells every sink that what it shows should change now.
    fn refresh(&mut self) {
        let (view, sinks) = self.view();
        for sink in sinks.iter_mut() {
            sink.refresh(&view);
        }
    }

    fn run(mut self, commands: &Receiver<Command>, wake: &Receiver<()>) {
        let mut busy = false;
        loop {
            // Sleep between drains, even under load: a collector that looks at
            // the rings continuously keeps taking the producers' `head` lines
            // away from them, and each record then pays a cross-core transfer.
            // Wake for the next poll and sample while a run is open, and for
            // the next publish; with neither, sleep until told something.
            let now = Instant::now();
            // A thread recording flat out fills half a ring in well under a
            // millisecond: after a large drain, look again soon rather than
            // wait for its wake-up, which a busy machine can delay past the
            // other half.
            let poll = if busy {
                BUSY_POLL
            } else {
                self.config.poll_interval
            };
            let wake_at = self.next_wake(now, poll);
            let command = match wake_at {
                Some(at) => select! {
                    recv(commands) -> c => Some(c),
                    recv(wake) -> _ => None,
                    default(at.saturating_duration_since(now)) => None,
                },
                None => select! {
                    recv(commands) -> c => Some(c),
                    recv(wake) -> _ => None,
                },
            };
            // A command may show the figures: every tally read first.
            let tallies = if command.is_some() {
                Tallies::All
            } else {
                Tallies::WhenDue
            };
            busy = self.drain(tallies).records >= BUSY_DRAIN;
            // Every request made before the drain is answered by this
            // sample: requests that came together are one.
            if self.shared.take_sample_request() {
                self.sample(false);
            }
            match command {
                None => {}
                Some(Ok(Command::StartRun {
                    run_id,
                    path,
                    reply,
                })) => {
                    let _ = reply.send(self.start_run(run_id, path));
                }
                Some(Ok(Command::EndRun { extra_meta, reply })) => {
                    let ended = self.end_run(&extra_meta);
                    self.answer_end_run(ended, reply);
                }
                Some(Ok(Command::Flush { reply })) => {
                    let _ = reply.send(self.flush());
                }
                Some(Ok(Command::ToSinks(mut request))) => {
                    let (view, sinks) = self.view();
                    for sink in sinks.iter_mut() {
                        sink.request(&view, &mut request);
                    }
                    // Untaken, it answers as it is dropped.
                }
                Some(Ok(Command::Shutdown)) | Some(Err(_)) => break,
            }
            self.run_due();
        }
        if self.run.is_some() {
            // The recorder is going away with a run open: keep what it has
            // (and push it: the push thread finishes its queue before it
            // is joined).
            let ended = self.end_run(&serde_json::Map::new());
            let (reply, _) = crossbeam_channel::bounded(1);
            self.answer_end_run(ended, reply);
        }
    }

    /// How long after a pass over the tallies that read `moved` sites that
    /// had changed the next one comes: `poll_interval` for up to
    /// [`SITES_PER_POLL`] sites, one more for each as many more, at most
    /// [`MAX_STRETCH`] of them. So the pass takes at most about
    /// [`SITES_PER_POLL`] sites' lines per poll from the recording cores
    /// (with thousands of names in turn, each region's counters were
    /// otherwise taken back every poll: BENCHMARKS.md, "Dynamic names by
    /// live names"), while a run file, a publish and a command still see
    /// every tally read at once ([`Tallies::All`]).
    fn tallies_period(&self, moved: u64) -> Duration {
        let stretch = moved.div_ceil(SITES_PER_POLL).clamp(1, MAX_STRETCH);
        self.config.poll_interval.saturating_mul(stretch as u32)
    }

    /// Takes every published record from every thread, and the news of
    /// the tallies that `tallies` says.
    fn drain(&mut self, tallies: Tallies) -> Drained {
        let now = Instant::now();
        let due = tallies == Tallies::All || self.next_tallies.is_none_or(|at| now >= at);
        let mut moved = 0;
        let mut settled = true;
        {
            let registered = self.shared.lock_rings();
            self.rings.clear();
            self.rings.extend(registered.iter().cloned());
        }
        let clock = &self.shared.clock;
        let drain_ns = self.run.as_ref().map(|r| r.scale.delta(r.t0, clock.raw()));
        // Rings seen closed before their drain: everything their thread
        // recorded is taken in this pass.
        let mut finished: Vec<*const Ring> = Vec::new();
        let mut total = 0;
        for ring in &self.rings {
            // Read before draining: once closed, what we drain is all there is.
            let closed = ring.is_closed();
            if let Some(run) = self.run.as_mut() {
                run.begin_ring();
            }
            let sites = &mut self.sites;
            let run = &mut self.run;
            let outside = &mut self.outside_between_runs;
            let drained = ring.drain(|records| {
                // Only a name this collector has not seen yet takes the
                // registry lock (extensions and resources records name none).
                if records
                    .iter()
                    .filter_map(Record::site_id)
                    .any(|site| site as usize > sites.len())
                {
                    copy_new_sites(sites);
                }
                match run.as_mut() {
                    Some(run) => run.ingest(
                        records,
                        Source {
                            thread: ring.thread,
                            sites,
                        },
                    ),
                    // Regions that outlived their run: reported by the next one.
                    None => *outside += Record::logical(records),
                }
            });
            total += drained;
            // An exited thread's tally is read in the pass that finds its
            // ring closed, after which the ring leaves the registry.
            let collected = if due || closed {
                let (tallies_settled, collected) = collect_tallies(ring, run, sites, outside);
                settled &= tallies_settled;
                collected
            } else {
                0
            };
            moved += collected;
            let dropped = ring.take_new_dropped();
            if let Some(run) = self.run.as_mut() {
                run.dropped += dropped;
                if drained + collected > 0 {
                    run.threads
                        .entry(ring.thread)
                        .or_insert_with(|| ring.thread_name.clone());
                }
            }
            if closed {
                finished.push(Arc::as_ptr(ring));
            }
        }
        if due {
            self.next_tallies = deadline(now, self.tallies_period(moved));
        }
        let orphaned = self.shared.orphaned();
        if let Some(run) = self.run.as_mut() {
            run.dropped += orphaned - self.orphaned_seen;
            if run.events_full() {
                self.shared.set_events_open(false);
            }
        }
        if let Some(at) = drain_ns {
            self.settle_events(at);
        }
        self.orphaned_seen = orphaned;
        if !finished.is_empty() {
            // Not `is_closed()` now: a ring closed after its tally was read
            // this pass still holds regions counted since, in the tally
            // alone (they never touch the ring), for the next pass.
            self.shared
                .lock_rings()
                .retain(|r| !finished.contains(&Arc::as_ptr(r)) || r.published() != r.consumed());
        }
        Drained {
            records: total,
            settled,
        }
    }

    /// After a drain that started `drain_ns` after the start: the held
    /// events old enough go to the sinks that store them. A failure is kept
    /// for the next file to report (the events it lost are omitted).
    fn settle_events(&mut self, drain_ns: u64) {
        let Some(run) = self.run.as_mut() else { return };
        let n = run.events.settle(drain_ns);
        if n == 0 {
            return;
        }
        let (view, sinks) = self.view();
        let Some(run) = view.run else { return };
        let events = &run.events.held()[..n];
        let mut stored = Ok(());
        for sink in sinks.iter_mut() {
            if let Some(result) = sink.events(&run, view.sites, events) {
                stored = stored.and(result);
            }
        }
        let run = self.run.as_mut().expect("runmetrics: a run is open");
        if let Err(e) = &stored {
            run.last_write_error = Some(e.to_string());
        }
        run.events.settled(n, stored.is_ok());
    }

    /// Answers `end_run`: at once, or, when a sink takes the answer (the
    /// final push), from that sink once it is done; the collector goes on
    /// meanwhile.
    fn answer_end_run(
        &mut self,
        ended: Result<PathBuf, EndRunError>,
        reply: Sender<Result<PathBuf, EndRunError>>,
    ) {
        let path = match ended {
            Ok(path) => path,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut answer: Option<EndAnswer> = Some(Box::new(move |result| {
            let _ = reply.send(result);
        }));
        let (view, sinks) = self.view();
        for sink in sinks.iter_mut() {
            sink.run_ended(&view, &path, &mut answer);
        }
        if let Some(answer) = answer {
            answer(Ok(path));
        }
    }

    /// Tells the sinks of a process sample: the CPU of the last window that
    /// ended (`None` keeps the previous, as at a run's start), the RSS.
    fn note_sample(&mut self, cpu_percent: Option<f64>, rss_bytes: u64) {
        for sink in &mut self.sinks {
            sink.sampled(cpu_percent, rss_bytes);
        }
    }

    fn start_run(&mut self, run_id: String, path: PathBuf) -> Result<(), StartRunError> {
        if let Some(run) = &self.run {
            return Err(StartRunError::RunAlreadyOpen {
                run_id: run.run_id.clone(),
            });
        }
        // Waits for the rest of the process's first 20 ms, if it is that
        // young: the scale's baseline.
        let (start, scale) = self.shared.clock.calibrate();
        let mut run = RunState::new(run_id, path, start, scale, self.config.events);
        run.outside_run = std::mem::take(&mut self.outside_between_runs);
        self.shared.set_run_start(start.raw);
        self.open(run);
        let events = self.run.as_ref().is_some_and(|r| !r.events_full());
        self.shared.set_run_open(true, events);
        Ok(())
    }

    /// Makes `run` the open run: its first sample, the run's timers, the
    /// first snapshot (with `flush_interval`).
    fn open(&mut self, mut run: RunState) {
        let s = self.sampler.start();
        run.add_sample(0, &s);
        self.shared.set_events_open(!run.events_full());
        run.count_epoch = self.shared.next_count_epoch();
        self.run = Some(run);
        let now = Instant::now();
        self.next_sample = deadline(now, self.config.sample_interval);
        self.next_rotate = self.config.rotate_every.and_then(|i| deadline(now, i));
        self.note_sample(None, s.rss_bytes);
        self.refresh();
        if self.config.flush_interval.is_some() {
            // The run's file exists from its start; a failure is counted.
            let _ = self.flush();
        }
    }

    /// Ends the open run and opens the next in the same directory, without
    /// closing the gate: timers never see a moment with no run open, the
    /// producers' `run_start` stays, and whatever the threads record after
    /// the final drain belongs to the next run. A failed write is counted,
    /// and the run goes on until the next try.
    fn rotate(&mut self) {
        self.next_rotate = self
            .config
            .rotate_every
            .and_then(|i| deadline(Instant::now(), i));
        self.drain(Tallies::All);
        self.sample(true);
        if self.write_run_file(true, &serde_json::Map::new()).is_err() {
            return;
        }
        let old = self.close_run();
        let dir = old.path.parent().unwrap_or(std::path::Path::new("."));
        let (run_id, path) = free_run_path(dir);
        let (start, scale) = self.shared.clock.calibrate();
        let run = RunState::after(&old, run_id, path, start, scale);
        self.open(run);
    }

    /// Takes the open run, whose final file is written, out of the
    /// collector: its timers stop and the exposition keeps its aggregates.
    fn close_run(&mut self) -> RunState {
        let run = self
            .run
            .take()
            .expect("runmetrics: a run is closed only while open");
        self.next_flush = None;
        self.next_rotate = None;
        let view = run.view(run.scale.delta(run.t0, self.shared.clock.raw()));
        for sink in &mut self.sinks {
            sink.run_closed(&view, &self.sites);
        }
        run
    }

    /// Writes a snapshot of the open run (`in_progress`) with everything
    /// recorded so far; the next periodic one comes an interval later.
    fn flush(&mut self) -> Result<PathBuf, FlushError> {
        if self.run.is_none() {
            return Err(FlushError::NoOpenRun);
        }
        self.drain(Tallies::All);
        self.next_flush = self
            .config
            .flush_interval
            .and_then(|i| deadline(Instant::now(), i));
        self.write_run_file(false, &serde_json::Map::new())
            .map_err(|(path, source)| FlushError::WriteRunFile { path, source })
    }

    /// Writes the open run's file: the final file when `ended`, else a
    /// snapshot. A failure is counted in the run, for the next file to report.
    fn write_run_file(
        &mut self,
        ended: bool,
        extra_meta: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<PathBuf, (PathBuf, std::io::Error)> {
        let (view, sinks) = self.view();
        let run_view = view.run.expect("runmetrics: called with a run open");
        let written_ns = run_view.now_ns;
        let what = Write { ended, extra_meta };
        let mut written = Ok(());
        for sink in sinks.iter_mut() {
            if let Some(result) = sink.write(&view, what) {
                // The first failure is the one reported.
                written = written.and(result);
            }
        }
        let run = self
            .run
            .as_mut()
            .expect("runmetrics: called with a run open");
        match written {
            Ok(()) => {
                run.written(written_ns);
                Ok(run.path.clone())
            }
            Err(e) => {
                run.write_failed(&e);
                Err((run.path.clone(), e))
            }
        }
    }

    /// Samples the process for the open run. A run's last sample (`last`)
    /// ends its window however short if no window has ended yet, so a run
    /// shorter than `MIN_WINDOW_SECONDS` still has its CPU figures.
    fn sample(&mut self, last: bool) {
        let Some(run) = self.run.as_mut() else { return };
        let s = self.sampler.sample(last && run.process.windows == 0);
        let at_ns = run.scale.delta(run.t0, self.shared.clock.raw());
        run.add_sample(at_ns, &s);
        self.next_sample = deadline(Instant::now(), self.config.sample_interval);
        self.note_sample(s.ends_window.then_some(s.cpu_percent), s.rss_bytes);
    }

    fn end_run(
        &mut self,
        extra_meta: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<PathBuf, EndRunError> {
        if self.run.is_none() {
            return Err(EndRunError::NoOpenRun);
        }
        // No new region joins this run from here; then take what was published.
        self.shared.set_run_open(false, false);
        // A thread caught counting a region leaves the region before it
        // for the next look; with the gate closed it is done in moments.
        let mut tries = 0;
        while !self.drain(Tallies::All).settled && tries < SETTLE_TRIES {
            tries += 1;
            std::thread::yield_now();
        }
        self.sample(true);
        match self.write_run_file(true, extra_meta) {
            Ok(path) => {
                self.close_run();
                self.refresh();
                Ok(path)
            }
            Err((path, source)) => {
                let full = self.run.as_ref().is_some_and(RunState::events_full);
                self.shared.set_run_open(true, !full);
                self.next_sample = deadline(Instant::now(), self.config.sample_interval);
                Err(EndRunError::WriteRunFile { path, source })
            }
        }
    }
}
