//! [`Config`]: the builder `init_metrics` and [`Recorder::new`](crate::Recorder::new) take.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::error::ConfigError;

/// Whether recording is compiled in: the `enabled` feature (on by default).
/// Off, every timer is inactive from its creation and the optimizer removes
/// it whole: the off switch for builds that must pay nothing.
pub(crate) const ENABLED: bool = cfg!(feature = "enabled");

/// Default Prometheus histogram bucket upper bounds, in seconds: 1 µs to 60 s.
pub(crate) const DEFAULT_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// What a recording thread does when its buffer is full because the collector
/// is behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the record and count it (`records_dropped` in the run file). The
    /// recording thread never waits. The default.
    #[default]
    Drop,
    /// Wait until the collector has made room: lossless, but a recording
    /// thread can stall behind a slow collector.
    Block,
}

/// Which events a run's file lists (its `events`). The aggregates in `meta`
/// count every region and count value whatever this says, and
/// `meta.events_omitted` counts the events left out.
///
/// Kept events stream to `<log_dir>/<run_id>.events.jsonl` as the collector
/// receives them, so memory stays flat however many there are; each file
/// written (a snapshot, or the final file, after which the sidecar is removed)
/// lists them in time order by streaming that file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Events {
    /// The first `n` events of the run (the default, 100 000). Once they are
    /// in, recording threads stop sending events at all.
    First(usize),
    /// Every event. A snapshot rewrites them all, so a service that keeps
    /// every event and flushes should also rotate (`Config::rotate_every`).
    All,
    /// One region or count event in `n` (the 1st, the n+1st, ...), and every
    /// process sample: a sample of the run's events at a bounded cost.
    EveryNth(u64),
    /// No events: the file has the aggregates only.
    None,
}

impl Default for Events {
    fn default() -> Events {
        Events::First(100_000)
    }
}

impl Events {
    /// The name written as `meta.event_mode`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Events::First(_) => "first",
            Events::All => "all",
            Events::EveryNth(_) => "every_nth",
            Events::None => "none",
        }
    }
}

/// Settings for the recorder: a builder, every method optional.
///
/// ```
/// use std::time::Duration;
/// let config = runmetrics::Config::new()
///     .job("al_inference")
///     .grouping("env", "dev")
///     .port(14233)
///     .pushgateway("http://127.0.0.1:9091")
///     .sample_interval(Duration::from_millis(500))
///     .event_cap(10_000);
/// assert_eq!(config.get_job(), "al_inference");
/// assert_eq!(config.get_port(), Some(14233));
/// assert_eq!(config.get_pushgateway(), Some("http://127.0.0.1:9091"));
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) port: Option<u16>,
    pub(crate) job: String,
    pub(crate) grouping: Vec<(String, String)>,
    pub(crate) pushgateway: Option<GatewayUrl>,
    pub(crate) sample_interval: Duration,
    pub(crate) events: Events,
    pub(crate) overflow: Overflow,
    pub(crate) buffer_records: usize,
    pub(crate) poll_interval: Duration,
    pub(crate) bind: IpAddr,
    pub(crate) namespace: String,
    pub(crate) buckets: Vec<f64>,
    pub(crate) publish_interval: Duration,
    pub(crate) push_timeout: Duration,
    pub(crate) push_auth: Option<PushAuth>,
    pub(crate) push_interval: Option<Duration>,
    pub(crate) flush_interval: Option<Duration>,
    pub(crate) keep_runs: Option<usize>,
    pub(crate) max_log_bytes: Option<u64>,
    pub(crate) rotate_every: Option<Duration>,
    pub(crate) max_names: usize,
    pub(crate) time_one_in: u32,
}

/// The Pushgateway URL as given; `Debug` shows it through
/// [`redact::url`](crate::redact::url), without user info or query values.
#[derive(Clone)]
pub(crate) struct GatewayUrl(pub(crate) String);

impl std::fmt::Debug for GatewayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::redact::url(&self.0))
    }
}

/// A credential: shown as `***` by `Debug`, never written anywhere.
#[derive(Clone)]
#[cfg_attr(not(feature = "push"), allow(dead_code))]
pub(crate) struct Secret(String);

impl Secret {
    #[cfg_attr(not(feature = "push"), allow(dead_code))]
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How pushes authenticate (kept, unused, when built without `push`).
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "push"), allow(dead_code))]
pub(crate) enum PushAuth {
    Basic { user: Secret, password: Secret },
    Bearer(Secret),
}

/// How many run files, and how many bytes of them, a `log_dir` keeps
/// ([`Config::keep_runs`], [`Config::max_log_bytes`]); `report` prunes by it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Retention {
    pub(crate) keep_runs: Option<usize>,
    pub(crate) max_bytes: Option<u64>,
}

/// The shortest `poll_interval`: a collector that looked more often would
/// mostly take the recording threads' cache lines away from them.
pub(crate) const MIN_POLL_INTERVAL: Duration = Duration::from_micros(100);
/// The shortest `sample_interval`, `publish_interval`, `flush_interval`,
/// `rotate_every`, `push_interval` and `push_timeout`.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// The longest `push_timeout`: a push under way is waited for when the
/// recorder is dropped.
pub(crate) const MAX_PUSH_TIMEOUT: Duration = Duration::from_secs(600);
/// The `buffer_records` allowed: 64 to 2^24 records (1 KiB to 256 MiB per
/// recording thread), a power of two.
pub(crate) const BUFFER_RECORDS: std::ops::RangeInclusive<usize> = 64..=1 << 24;
/// The `time_one_in` allowed (and a site's `sample = n`): 1 (every region
/// timed) to 32 768, so a stride fits the tally's skip counter.
pub(crate) const TIME_ONE_IN: std::ops::RangeInclusive<u32> = 1..=MAX_TIME_ONE_IN;
/// The greatest `time_one_in` (and `sample = n`).
pub(crate) const MAX_TIME_ONE_IN: u32 = 1 << 15;

impl Default for Config {
    fn default() -> Config {
        Config {
            port: None,
            job: "runmetrics".to_owned(),
            grouping: Vec::new(),
            pushgateway: None,
            sample_interval: Duration::from_secs(1),
            events: Events::default(),
            overflow: Overflow::Drop,
            buffer_records: 65_536,
            poll_interval: Duration::from_millis(10),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            namespace: "runmetrics".to_owned(),
            buckets: DEFAULT_BUCKETS.to_vec(),
            publish_interval: Duration::from_secs(1),
            push_timeout: Duration::from_secs(10),
            push_auth: None,
            push_interval: None,
            flush_interval: None,
            keep_runs: None,
            max_log_bytes: None,
            rotate_every: None,
            max_names: crate::site::DEFAULT_MAX_NAMES as usize,
            time_one_in: 1,
        }
    }
}

impl Config {
    /// The defaults: job `runmetrics`, samples every second, 100 000 events per
    /// run, [`Overflow::Drop`], 65 536 records of buffer per recording thread.
    pub fn new() -> Config {
        Config::default()
    }

    /// Serve Prometheus metrics at `http://<bind>:<port>/metrics` (needs the
    /// `prometheus` feature, on by default). Port 0 picks a free port: see
    /// [`Recorder::metrics_addr`](crate::Recorder::metrics_addr).
    pub fn port(mut self, port: u16) -> Config {
        self.port = Some(port);
        self
    }

    /// The Prometheus job name (default `runmetrics`); also written to the
    /// run file. Any non-empty text.
    pub fn job(mut self, job: impl Into<String>) -> Config {
        self.job = job.into();
        self
    }

    /// Adds one grouping label (e.g. `env=dev`); also written to the run file.
    /// The key must be a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`,
    /// not `job`, not starting with `__`); the value may be any text.
    pub fn grouping(mut self, key: impl Into<String>, value: impl Into<String>) -> Config {
        let key = key.into();
        self.grouping.retain(|(k, _)| *k != key);
        self.grouping.push((key, value.into()));
        self
    }

    /// The Pushgateway URL, e.g. `http://127.0.0.1:9091` (needs the `push`
    /// feature). `end_run` then pushes the metrics once, replacing the group
    /// `job` + grouping (a PUT, like prometheus_client's `push_to_gateway`).
    /// It must be an `http://` or `https://` URL; `Recorder::new` says what is
    /// wrong with any other. User info (`http://user:password@host`) and
    /// query values are never shown: `Debug`, errors and files show
    /// `http://***@host/?token=***`.
    pub fn pushgateway(mut self, url: impl Into<String>) -> Config {
        self.pushgateway = Some(GatewayUrl(url.into()));
        self
    }

    /// How long a push may take before it fails (default 10 s). Allowed:
    /// 1 ms to 10 minutes; anything else is a [`ConfigError`](crate::ConfigError).
    /// Dropping the recorder waits for a push under way, so at most this long.
    pub fn push_timeout(mut self, timeout: Duration) -> Config {
        self.push_timeout = timeout;
        self
    }

    /// Authenticates pushes with HTTP basic auth. Neither the user nor the
    /// password is ever written to a file, an error message or `Debug`
    /// output (a gateway's reply quoted in a [`PushError`](crate::PushError)
    /// has them replaced by `***`).
    pub fn push_basic_auth(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Config {
        self.push_auth = Some(PushAuth::Basic {
            user: Secret(user.into()),
            password: Secret(password.into()),
        });
        self
    }

    /// Authenticates pushes with a bearer token (never written anywhere).
    pub fn push_bearer_token(mut self, token: impl Into<String>) -> Config {
        self.push_auth = Some(PushAuth::Bearer(Secret(token.into())));
        self
    }

    /// Also pushes every `interval` (a PUT), for long-running processes.
    /// Allowed: 1 ms or longer, up to `Duration::MAX`; an interval past what
    /// the clock can hold means never.
    /// The Pushgateway's own documentation says it suits batch jobs: a
    /// service is better scraped (see [`Config::port`]).
    pub fn push_interval(mut self, interval: Duration) -> Config {
        self.push_interval = Some(interval);
        self
    }

    /// How often the collector samples process CPU and RSS during a run
    /// (default 1 s). Allowed: 1 ms or longer, up to `Duration::MAX`; an
    /// interval past what the clock can hold means samples only at the run's
    /// start and end and on [`sample_process_gauges`](crate::sample_process_gauges).
    pub fn sample_interval(mut self, interval: Duration) -> Config {
        self.sample_interval = interval;
        self
    }

    /// How many events a run keeps (default 100 000): short for
    /// `events(Events::First(cap))`. Past the cap, the aggregates stay exact
    /// and `events_omitted` counts the rest. Allowed: 0 to `usize::MAX`.
    pub fn event_cap(self, cap: usize) -> Config {
        self.events(Events::First(cap))
    }

    /// Which events a run's file lists: the first N (the default), all of
    /// them, every n-th, or none. See [`Events`].
    ///
    /// ```
    /// use runmetrics::{Config, Events};
    /// let config = Config::new().events(Events::EveryNth(100));
    /// assert_eq!(config.get_events(), Events::EveryNth(100));
    /// ```
    pub fn events(mut self, events: Events) -> Config {
        self.events = events;
        self
    }

    /// What a recording thread does when its buffer is full (default [`Overflow::Drop`]).
    pub fn overflow(mut self, overflow: Overflow) -> Config {
        self.overflow = overflow;
        self
    }

    /// Records of buffer per recording thread (a power of two from 64 to
    /// 2^24, i.e. 1 KiB to 256 MiB per thread; default 65 536, i.e. 1 MiB
    /// per thread that records, allocated at its first record). A smaller buffer saves memory but drops (or, with
    /// [`Overflow::Block`], waits) sooner when a thread records tens of
    /// millions of regions a second.
    pub fn buffer_records(mut self, records: usize) -> Config {
        self.buffer_records = records;
        self
    }

    /// Sampled timing for every region of this recorder (default 1: every
    /// region timed): each region is still counted exactly, but the clock is
    /// read for about one in `n` (strides of 1 to `2n - 1` regions, uniform,
    /// drawn per thread, so periodic work does not alias). The run file
    /// marks such entries (`"sampled": {"one_in": n, "timed": k, ..}`) and
    /// gives the estimated total (count × mean of the timed) with its
    /// standard error. A site's own `phase!(.., sample = m)` or
    /// `#[measure(sample = m)]` takes precedence. Fenced timers sample too
    /// (the timed regions read the clock fenced). Allowed: 1 to 32 768.
    ///
    /// ```
    /// let config = runmetrics::Config::new().time_one_in(64);
    /// assert_eq!(config.get_time_one_in(), 64);
    /// ```
    pub fn time_one_in(mut self, n: u32) -> Config {
        self.time_one_in = n;
        self
    }

    /// The sampled-timing rate ([`Config::time_one_in`]).
    pub fn get_time_one_in(&self) -> u32 {
        self.time_one_in
    }

    /// How often the collector looks at idle threads' buffers (default 10 ms).
    /// Busy threads wake it by themselves. Allowed: 100 µs or longer, up to
    /// `Duration::MAX`; an interval past what the clock can hold means the
    /// collector looks only when a thread wakes it, on a command and at
    /// `end_run`.
    pub fn poll_interval(mut self, interval: Duration) -> Config {
        self.poll_interval = interval;
        self
    }

    /// The address the metrics server binds (default `127.0.0.1`, loopback
    /// only; `0.0.0.0` or `::` for every interface; IPv6 works).
    pub fn bind(mut self, addr: IpAddr) -> Config {
        self.bind = addr;
        self
    }

    /// The prefix of every Prometheus metric name (default `runmetrics`). It
    /// is made a valid name by [`sanitize_metric_name`](crate::sanitize_metric_name).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Config {
        self.namespace = namespace.into();
        self
    }

    /// Upper bounds, in seconds, of the Prometheus duration histogram buckets
    /// (`+Inf` is implied). Default: 1 µs to 60 s in 1-2.5-5 steps. Allowed:
    /// at least one bound, each positive and finite, strictly increasing.
    pub fn buckets(mut self, upper_bounds_seconds: impl Into<Vec<f64>>) -> Config {
        self.buckets = upper_bounds_seconds.into();
        self
    }

    /// How often the collector refreshes what a scrape sees (default 1 s; also
    /// at the start and end of every run). Allowed: 1 ms or longer, up to
    /// `Duration::MAX`; an interval past what the clock can hold means only
    /// at the start and end of runs and on pushes.
    pub fn publish_interval(mut self, interval: Duration) -> Config {
        self.publish_interval = interval;
        self
    }

    /// Also writes the open run's file every `interval`, for services and
    /// long jobs: a snapshot in the same layout with `meta.in_progress` true,
    /// `meta.ended_at` null and `meta.window` the stats of the last interval.
    /// Each write replaces the file atomically, so a reader (or whatever
    /// survives a crash) always finds a complete file. Off by default (the
    /// file is written at `end_run` only); see also [`flush`](crate::flush).
    /// Allowed: 1 ms or longer, up to `Duration::MAX`; an interval past what
    /// the clock can hold means only the first snapshot, at the run's start.
    pub fn flush_interval(mut self, interval: Duration) -> Config {
        self.flush_interval = Some(interval);
        self
    }

    /// Keeps at most `runs` run files in a run's `log_dir`, the open run's
    /// included: older ones are removed, oldest first, when a run starts
    /// and after each write of its file. Only files named like run files
    /// (`<run_id>.json`) are touched, and never the open run's. Allowed: 1
    /// to `usize::MAX`.
    pub fn keep_runs(mut self, runs: usize) -> Config {
        self.keep_runs = Some(runs);
        self
    }

    /// Keeps the run files in a run's `log_dir` within `bytes` in all,
    /// removing the oldest first, like [`Config::keep_runs`]. The open run's
    /// file is never removed, even when it alone is larger. Allowed: any
    /// `u64` (0 keeps the open run's file only).
    pub fn max_log_bytes(mut self, bytes: u64) -> Config {
        self.max_log_bytes = Some(bytes);
        self
    }

    /// Ends the open run every `interval` and starts the next one in the
    /// same `log_dir`, for a run that would otherwise last forever: each
    /// run's file is final and bounded, and the next one names it in
    /// `meta.previous_run_id`. Nothing recorded is lost or counted twice at
    /// a boundary: a region that spans it is in the run that follows.
    /// With [`Config::keep_runs`], the directory stays bounded too.
    /// Allowed: 1 ms or longer, up to `Duration::MAX`; an interval past what
    /// the clock can hold means never.
    pub fn rotate_every(mut self, interval: Duration) -> Config {
        self.rotate_every = Some(interval);
        self
    }

    /// The most distinct names (phases, functions and counts together,
    /// over the process's life: names are never forgotten) the process
    /// keeps, 262 144 (2^18) by default, from 1 to 16 777 216 (2^24). Each name
    /// costs about 2 to 7 KiB (README, Costs), so this bounds what names
    /// made from unbounded input (a request id in a phase name) can take.
    /// Past it, a new name's regions and counts are pooled under the entry
    /// `(names over max_names)` of module `runmetrics`, and `meta.names`
    /// counts the refused lookups. Process-wide: the last recorder made
    /// sets it.
    pub fn max_names(mut self, names: usize) -> Config {
        self.max_names = names;
        self
    }

    /// The flush interval, if set.
    pub fn get_flush_interval(&self) -> Option<Duration> {
        self.flush_interval
    }

    /// Which events a run's file lists.
    pub fn get_events(&self) -> Events {
        self.events
    }

    /// The job name.
    pub fn get_job(&self) -> &str {
        &self.job
    }

    /// The grouping labels, in the order given.
    pub fn get_grouping(&self) -> &[(String, String)] {
        &self.grouping
    }

    /// The Prometheus port, if set.
    pub fn get_port(&self) -> Option<u16> {
        self.port
    }

    /// The Pushgateway URL, if set.
    pub fn get_pushgateway(&self) -> Option<&str> {
        self.pushgateway.as_ref().map(|u| u.0.as_str())
    }

    pub(crate) fn retention(&self) -> Retention {
        Retention {
            keep_runs: self.keep_runs,
            max_bytes: self.max_log_bytes,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let any = None;
        let durations = [
            (
                "sample_interval",
                Some(self.sample_interval),
                MIN_INTERVAL,
                any,
            ),
            (
                "poll_interval",
                Some(self.poll_interval),
                MIN_POLL_INTERVAL,
                any,
            ),
            (
                "publish_interval",
                Some(self.publish_interval),
                MIN_INTERVAL,
                any,
            ),
            (
                "push_timeout",
                Some(self.push_timeout),
                MIN_INTERVAL,
                Some(MAX_PUSH_TIMEOUT),
            ),
            ("push_interval", self.push_interval, MIN_INTERVAL, any),
            ("flush_interval", self.flush_interval, MIN_INTERVAL, any),
            ("rotate_every", self.rotate_every, MIN_INTERVAL, any),
        ];
        for (setting, got, min, max) in durations {
            let Some(got) = got else { continue };
            if got.is_zero() {
                return Err(ConfigError::ZeroInterval { setting });
            }
            if got < min || max.is_some_and(|max| got > max) {
                return Err(ConfigError::IntervalOutOfRange {
                    setting,
                    got,
                    min,
                    max: max.map_or_else(|| "Duration::MAX".to_owned(), |m| format!("{m:?}")),
                });
            }
        }
        if !BUFFER_RECORDS.contains(&self.buffer_records) || !self.buffer_records.is_power_of_two()
        {
            return Err(ConfigError::BufferRecords {
                records: self.buffer_records,
            });
        }
        if self.buckets.is_empty()
            || self.buckets.iter().any(|b| !b.is_finite() || *b <= 0.0)
            || self.buckets.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(ConfigError::Buckets {
                buckets: self.buckets.iter().take(16).copied().collect(),
            });
        }
        if !(1..=crate::site::MAX_NAMES_LIMIT as usize).contains(&self.max_names) {
            return Err(ConfigError::MaxNames {
                names: self.max_names,
            });
        }
        if !TIME_ONE_IN.contains(&self.time_one_in) {
            return Err(ConfigError::TimeOneIn {
                n: self.time_one_in,
            });
        }
        if self.events == Events::EveryNth(0) {
            return Err(ConfigError::EveryZerothEvent);
        }
        if self.keep_runs == Some(0) {
            return Err(ConfigError::KeepNoRuns);
        }
        if self.job.is_empty() {
            return Err(ConfigError::EmptyJob);
        }
        for (key, _) in &self.grouping {
            if key.is_empty() {
                return Err(ConfigError::EmptyGroupingKey { key: key.clone() });
            }
            if !is_label_name(key) || key == "job" || key.starts_with("__") {
                return Err(ConfigError::GroupingKey {
                    key: key.chars().take(64).collect(),
                });
            }
        }
        Ok(())
    }
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let e = Config::new().buffer_records(1000).validate().unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
        let e = Config::new()
            .sample_interval(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("sample_interval"), "{e}");
        let e = Config::new()
            .push_interval(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("push_interval"), "{e}");
        assert!(Config::new().job("").validate().is_err());
        assert!(Config::new().grouping("", "x").validate().is_err());
        assert!(Config::new().validate().is_ok());
        for names in [0, (1 << 24) + 1, usize::MAX] {
            let e = Config::new().max_names(names).validate().unwrap_err();
            assert!(e.to_string().contains("max_names"), "{e}");
        }
        assert!(Config::new().max_names(1 << 24).validate().is_ok());
    }

    #[test]
    fn grouping_key_given_twice_keeps_the_last_value() {
        let c = Config::new().grouping("env", "dev").grouping("env", "prod");
        assert_eq!(c.get_grouping(), &[("env".to_owned(), "prod".to_owned())]);
    }
}
