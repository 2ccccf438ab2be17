//! The errors, one enum per fallible operation.

use std::path::PathBuf;

/// A [`Config`](crate::Config) setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An interval of zero.
    #[error("{setting} must be longer than zero; use e.g. Duration::from_secs(1) (its Config method's docs give the range)")]
    ZeroInterval {
        /// The setting's name.
        setting: &'static str,
    },
    /// An interval outside its setting's range.
    #[error("{setting} must be from {min:?} to {max}, got {got:?}")]
    IntervalOutOfRange {
        /// The setting's name.
        setting: &'static str,
        /// The interval given.
        got: std::time::Duration,
        /// The shortest allowed.
        min: std::time::Duration,
        /// The longest allowed; `Duration::MAX` means any (an interval past
        /// what the clock can hold means never).
        max: String,
    },
    /// A per-thread buffer size that is not a power of two from 64 to 2^24.
    #[error("buffer_records must be a power of two from 64 to 16777216 (2^24, 256 MiB per recording thread), got {records}; e.g. 65536")]
    BufferRecords {
        /// The size given.
        records: usize,
    },
    /// Histogram bucket bounds that are not positive, finite and increasing
    /// (the first 16 are shown).
    #[error("buckets must be positive, finite and strictly increasing seconds, got {buckets:?}; e.g. [0.001, 0.01, 0.1, 1.0]")]
    Buckets {
        /// The bounds given (the first 16).
        buckets: Vec<f64>,
    },
    /// A `max_names` of 0 or past 2^24.
    #[error("max_names must be from 1 to 16777216 (2^24), got {names}; the default is 262144 (2^18; each name costs about 2 to 7 KiB)")]
    MaxNames {
        /// The cap given.
        names: usize,
    },
    /// A `time_one_in` outside 1 to 32 768.
    #[error("time_one_in must be from 1 (every region timed) to 32768, got {n}; e.g. 64 times about one region in 64")]
    TimeOneIn {
        /// The rate given.
        n: u32,
    },
    /// `Events::EveryNth(0)`.
    #[error("Events::EveryNth(n) needs n of at least 1 (1 keeps every event); to keep none use Events::None")]
    EveryZerothEvent,
    /// `keep_runs(0)`: the open run's file is always kept.
    #[error("keep_runs must be at least 1 (the open run's file always stays); to keep only the newest run use keep_runs(1)")]
    KeepNoRuns,
    /// An empty job name.
    #[error("job must not be empty; Prometheus needs a job label")]
    EmptyJob,
    /// An empty grouping key.
    #[error("grouping keys must not be empty (got {key:?})")]
    EmptyGroupingKey {
        /// The key given.
        key: String,
    },
    /// A grouping key that is not a Prometheus label name.
    #[error("grouping key {key:?} is not a Prometheus label name: use [a-zA-Z_][a-zA-Z0-9_]*, not `job` (that is Config::job) and not starting with `__`")]
    GroupingKey {
        /// The key given (its first 64 characters).
        key: String,
    },
}

/// Why [`init_metrics`](crate::init_metrics) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitMetricsError {
    /// `init_metrics` was already called, or the recorder was already started
    /// with the defaults by an earlier `start_run`.
    #[error("runmetrics is already initialised ({how}); call init_metrics once, before the first start_run")]
    AlreadyInitialized {
        /// How it was initialised before.
        how: &'static str,
    },
    /// A setting cannot work.
    #[error("invalid runmetrics config: {0}")]
    Config(#[from] ConfigError),
    /// The recorder could not be created.
    #[error(transparent)]
    Recorder(#[from] NewRecorderError),
}

/// Why [`Recorder::new`](crate::Recorder::new) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewRecorderError {
    /// A setting cannot work.
    #[error("invalid runmetrics config: {0}")]
    Config(#[from] ConfigError),
    /// Every recorder slot is taken.
    #[error("too many runmetrics recorders alive at once (at most {max}); drop one, or share one")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// The collector thread could not be started.
    #[error("could not start the runmetrics-collector thread: {0}")]
    SpawnCollector(#[source] std::io::Error),
    /// The metrics server could not listen on its address.
    #[error("could not serve metrics on {addr}: {source}; choose another Config::port, or stop what is using it")]
    Serve {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause (e.g. the address is in use).
        source: std::io::Error,
    },
    /// The Pushgateway cannot be used (a bad URL, or the client failed to start).
    #[cfg(feature = "push")]
    #[error("pushgateway: {0}")]
    Push(#[from] PushError),
    /// A Pushgateway was set but runmetrics was built without the `push` feature.
    #[error("Config::pushgateway is set but runmetrics was built without its `push` feature; enable it in Cargo.toml")]
    PushDisabled,
    /// A port was set but runmetrics was built without the `prometheus` feature.
    #[error("Config::port is set but runmetrics was built without its `prometheus` feature; enable it in Cargo.toml")]
    PrometheusDisabled,
}

/// Why [`start_run`](crate::start_run) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartRunError {
    /// A run is open already; runs are sequential.
    #[error("run {run_id} is still open; call end_run before starting another")]
    RunAlreadyOpen {
        /// The open run.
        run_id: String,
    },
    /// The log directory could not be created.
    #[error("could not create log_dir {path}: {source}; choose a directory you can write to")]
    CreateLogDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The log directory exists but no file can be written in it.
    #[error(
        "log_dir {path} is not writable: {source}; fix its permissions or choose another directory"
    )]
    LogDirNotWritable {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The recorder could not be created (first use of the global recorder).
    #[error(transparent)]
    Recorder(#[from] NewRecorderError),
    /// Called in a forked child: the recorder belongs to the parent.
    #[error("this process is a fork of the one that made the recorder, whose collector stayed with the parent; make a new Recorder in the child")]
    ForkedChild,
    /// The collector thread is gone (it panicked); nothing can be recorded.
    #[error("the runmetrics-collector thread has stopped; this is a bug, please report it")]
    CollectorGone,
}

/// Why [`end_run`](crate::end_run) failed. The run stays open (fix the cause
/// and call `end_run` again; nothing recorded is lost), except after
/// `Push`, which comes once the run file is written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndRunError {
    /// No run is open.
    #[error("no run is open; call start_run first")]
    NoOpenRun,
    /// `extra_meta` is not a JSON object (or null).
    #[error("extra_meta must be a JSON object like json!({{\"facts_final\": 100}}) or null, got {found}")]
    ExtraMetaNotObject {
        /// What was given: `array`, `string`, `number` or `bool`.
        found: &'static str,
    },
    /// `extra_meta` nests arrays and objects more than `limit` (64) levels
    /// deep, `extra_meta` itself being level 1.
    #[error(
        "extra_meta nests arrays and objects more than {limit} levels deep (extra_meta itself \
         is level 1); flatten it, or store the deep part as a string \
         (serde_json::to_string); the run is still open"
    )]
    ExtraMetaTooDeep {
        /// The deepest level allowed.
        limit: usize,
    },
    /// A key of `extra_meta` is one runmetrics writes itself.
    #[error(
        "extra_meta key {key:?} is reserved by runmetrics (it writes that key itself); rename it"
    )]
    ReservedKey {
        /// The key.
        key: String,
    },
    /// The run file could not be written.
    #[error("could not write run file {path}: {source}; the run is still open, fix the cause and call end_run again")]
    WriteRunFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Called in a forked child: the recorder belongs to the parent.
    #[error("this process is a fork of the one that made the recorder, whose collector stayed with the parent; make a new Recorder in the child")]
    ForkedChild,
    /// The collector thread is gone (it panicked).
    #[error("the runmetrics-collector thread has stopped; this is a bug, please report it")]
    CollectorGone,
    /// The run file was written and the run is ended, but the push to the
    /// Pushgateway failed; push again with [`Recorder::push`](crate::Recorder::push).
    #[cfg(feature = "push")]
    #[error("run file {path} is written, but the push failed: {source}")]
    Push {
        /// The run file, safely written.
        path: PathBuf,
        /// Why the push failed.
        source: PushError,
    },
}

/// Why [`flush`](crate::flush) failed. The run stays open and keeps
/// recording; the failure is counted in `meta.write_failures` of the next
/// file that is written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// No run is open.
    #[error("no run is open; call start_run first")]
    NoOpenRun,
    /// The snapshot could not be written.
    #[error("could not write run file {path}: {source}; recording goes on and the next flush tries again (free space, or restore log_dir)")]
    WriteRunFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Called in a forked child: the recorder belongs to the parent.
    #[error("this process is a fork of the one that made the recorder, whose collector stayed with the parent; make a new Recorder in the child")]
    ForkedChild,
    /// The collector thread is gone (it panicked).
    #[error("the runmetrics-collector thread has stopped; this is a bug, please report it")]
    CollectorGone,
}

/// Why a push to the Pushgateway failed. Never shows credentials.
#[cfg(feature = "push")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The gateway URL cannot be used.
    #[error("gateway URL {url} cannot be used: {reason}; give e.g. http://127.0.0.1:9091")]
    InvalidUrl {
        /// The URL, without credentials.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The gateway did not answer in time.
    #[error("no answer from {url} within {timeout:?}; is the gateway up? (Config::push_timeout)")]
    Timeout {
        /// The group URL, without credentials.
        url: String,
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// The request failed (connection refused, TLS, DNS ...).
    #[error("could not reach {url}: {reason}; is the gateway running there?")]
    Request {
        /// The group URL, without credentials.
        url: String,
        /// The cause.
        reason: String,
    },
    /// The gateway answered with an error status.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The group URL, without credentials.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the gateway's answer (at most 200 characters, one
        /// line, with credentials and anything after a word like
        /// `Authorization` or `token` replaced by `***`).
        body: String,
    },
    /// The HTTP client could not be made.
    #[error("could not start the push client: {0}")]
    Client(String),
    /// No Pushgateway is configured.
    #[error("no Pushgateway is configured; set Config::pushgateway")]
    NotConfigured,
    /// Called in a forked child: the recorder belongs to the parent.
    #[error("this process is a fork of the one that made the recorder, whose collector stayed with the parent; make a new Recorder in the child")]
    ForkedChild,
    /// The push thread is gone (it panicked).
    #[error("the runmetrics-push thread has stopped; this is a bug, please report it")]
    Gone,
}

/// Why [`install_metrics`](crate::install_metrics) failed.
#[cfg(feature = "metrics")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallMetricsError {
    /// The process has a `metrics` recorder already.
    #[error(
        "a metrics recorder is already installed in this process: install runmetrics' first, or \
         combine them (metrics-util's FanoutBuilder) with runmetrics::metrics_recorder()"
    )]
    AlreadySet,
}
