//! [`Recorder`], the explicit handle, and the global recorder behind the
//! free functions (`start_run`, `end_run`, ...).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crossbeam_channel::{bounded, Sender};

use crate::collector::{self, Command};
use crate::config::Config;
use crate::error::{EndRunError, FlushError, InitMetricsError, NewRecorderError, StartRunError};
use crate::local::timer::{self, FunctionTimer, PhaseTimer};
use crate::report::RESERVED_META_KEYS;
use crate::run_id::free_run_path;
use crate::shared::{self, Shared, MAX_RECORDERS};
use crate::site::{static_id, Kind};

/// A recorder: its own collector thread, runs and run files. The free
/// functions use one global recorder; make a `Recorder` to pass around
/// explicitly instead, or to run several independent ones (at most 16 at once).
///
/// Dropping a recorder stops its collector; a run still open is ended and
/// written first.
///
/// ```
/// use runmetrics::{Config, Recorder};
/// let dir = std::env::temp_dir().join(format!("rm-doc-rec-{}", std::process::id()));
/// let rec = Recorder::new(Config::new().job("batch"))?;
/// rec.start_run(&dir)?;
/// {
///     let _t = rec.phase("load", "io");
/// }
/// rec.observe_counts(&[("rows", 42)]);
/// let path = rec.end_run(serde_json::json!({"rows_total": 42}))?;
/// assert!(path.exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Recorder {
    shared: Arc<Shared>,
    commands: Sender<Command>,
    collector: Option<std::thread::JoinHandle<()>>,
    config: Config,
    #[cfg(feature = "prometheus")]
    server: Option<crate::prometheus::server::MetricsServer>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("shared", &self.shared)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts a recorder and its `runmetrics-collector` thread.
    pub fn new(config: Config) -> Result<Recorder, NewRecorderError> {
        Recorder::with_sinks(config, Vec::new())
    }

    /// A recorder whose collector feeds `extra` after the sinks `config`
    /// asks for (tests add a sink of their own this way).
    pub(crate) fn with_sinks(
        config: Config,
        extra: collector::Sinks,
    ) -> Result<Recorder, NewRecorderError> {
        config.validate()?;
        // Validated: at most MAX_NAMES_LIMIT.
        crate::site::set_max_names(config.max_names as u32);
        let (wake_tx, wake_rx) = bounded(1);
        let shared = Shared::new(config.overflow, config.buffer_records, wake_tx)
            .ok_or(NewRecorderError::TooMany { max: MAX_RECORDERS })?
            .with_time_one_in(config.time_one_in);
        let shared = Arc::new(shared);
        shared.register_live();
        let (server, mut sinks) = build_sinks(&config)?;
        sinks.extend(extra);
        let (commands, commands_rx) = bounded(64);
        let collector =
            collector::spawn(shared.clone(), config.clone(), commands_rx, wake_rx, sinks)
                .map_err(NewRecorderError::SpawnCollector)?;
        #[cfg(not(feature = "prometheus"))]
        let () = server;
        Ok(Recorder {
            shared,
            commands,
            collector: Some(collector),
            config,
            #[cfg(feature = "prometheus")]
            server,
        })
    }

    /// Where `/metrics` is served, when [`Config::port`] was set (with port 0,
    /// this tells the port that was picked).
    ///
    /// ```
    /// let rec = runmetrics::Recorder::new(runmetrics::Config::new().port(0))?;
    /// let addr = rec.metrics_addr().expect("a port was set");
    /// assert!(addr.ip().is_loopback());
    /// # Ok::<(), runmetrics::NewRecorderError>(())
    /// ```
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        #[cfg(feature = "prometheus")]
        return self.server.as_ref().map(|s| s.local_addr());
        #[cfg(not(feature = "prometheus"))]
        None
    }

    /// What this recorder shares with its threads, for a sink that outlives
    /// a borrow of it (the `tracing` layer).
    #[cfg(feature = "tracing")]
    pub(crate) fn shared_handle(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The settings this recorder was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether a run is open.
    pub fn is_run_open(&self) -> bool {
        self.shared.run_open()
    }

    /// Opens a run writing to `<log_dir>/<run_id>.json` (the directory is made
    /// if needed) and returns the run id. See [`start_run`](crate::start_run).
    pub fn start_run(&self, log_dir: impl AsRef<Path>) -> Result<String, StartRunError> {
        if self.shared.forked() {
            return Err(StartRunError::ForkedChild);
        }
        let dir = log_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StartRunError::CreateLogDir {
            path: dir.to_owned(),
            source,
        })?;
        check_writable(dir)?;
        let (run_id, path) = free_run_path(dir);
        let id = run_id.clone();
        self.ask(
            |reply| Command::StartRun {
                run_id: id,
                path,
                reply,
            },
            StartRunError::CollectorGone,
        )?;
        Ok(run_id)
    }

    /// Ends the open run and writes its file; returns the file's path. See
    /// [`end_run`](crate::end_run).
    pub fn end_run(&self, extra_meta: serde_json::Value) -> Result<PathBuf, EndRunError> {
        if self.shared.forked() {
            drop_flat(extra_meta);
            return Err(EndRunError::ForkedChild);
        }
        let extra_meta = extra_meta_object(extra_meta)?;
        self.ask(
            |reply| Command::EndRun { extra_meta, reply },
            EndRunError::CollectorGone,
        )
    }

    /// Writes a snapshot of the open run now and returns its path once it is
    /// on disk; see [`flush`](crate::flush).
    pub fn flush(&self) -> Result<PathBuf, FlushError> {
        if self.shared.forked() {
            return Err(FlushError::ForkedChild);
        }
        self.ask(|reply| Command::Flush { reply }, FlushError::CollectorGone)
    }

    /// Times a phase on this recorder; see [`PhaseTimer`].
    #[inline]
    pub fn phase(&self, phase: &'static str, module: &'static str) -> PhaseTimer<'_> {
        PhaseTimer::on(&self.shared, || static_id(Kind::Phase, phase, module))
    }

    /// Times a phase whose names are made at run time (looked up by their text per call).
    pub fn phase_dynamic(&self, phase: &str, module: &str) -> PhaseTimer<'_> {
        PhaseTimer::on_dynamic(&self.shared, phase, module)
    }

    /// Times one call of a function on this recorder; see [`FunctionTimer`].
    #[inline]
    pub fn function(&self, name: &'static str, module: &'static str) -> FunctionTimer<'_> {
        FunctionTimer::on(&self.shared, || static_id(Kind::Function, name, module))
    }

    /// Times a function call whose names are made at run time (looked up by their text per call).
    pub fn function_dynamic(&self, name: &str, module: &str) -> FunctionTimer<'_> {
        FunctionTimer::on_dynamic(&self.shared, name, module)
    }

    /// Runs `f`, timed as a call of function `name` in `module`.
    #[inline]
    pub fn measure_fn<R>(
        &self,
        name: &'static str,
        module: &'static str,
        f: impl FnOnce() -> R,
    ) -> R {
        let _t = self.function(name, module);
        f()
    }

    /// Records count values; see [`observe_counts`](crate::observe_counts).
    pub fn observe_counts(&self, counts: &[(&str, i64)]) {
        timer::observe_counts(|| Some(&self.shared), counts);
    }

    /// Publishes the metrics now and pushes them to the configured
    /// Pushgateway with `method` (PUT replaces the group, POST adds, DELETE
    /// removes it); waits for the gateway's answer (at most
    /// [`Config::push_timeout`]). Only the caller waits: the collector hands
    /// the push to the `runmetrics-push` thread and goes on draining, so
    /// recording threads and other callers are never held up by a gateway.
    ///
    /// ```no_run
    /// use runmetrics::{Config, PushMethod, Recorder};
    /// let rec = Recorder::new(Config::new().job("batch").pushgateway("http://127.0.0.1:9091"))?;
    /// rec.push(PushMethod::Post)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "push")]
    pub fn push(&self, method: crate::PushMethod) -> Result<(), crate::PushError> {
        if self.shared.forked() {
            return Err(crate::PushError::ForkedChild);
        }
        self.ask(
            |reply| {
                Command::ToSinks(Box::new(crate::prometheus::push::PushRequest::new(
                    method, reply,
                )))
            },
            crate::PushError::Gone,
        )
    }

    /// Sends the command `command` makes around a reply channel and waits for
    /// the collector's answer; `gone` when the collector has stopped (before
    /// the command or before answering it).
    fn ask<T, E>(
        &self,
        command: impl FnOnce(Sender<Result<T, E>>) -> Command,
        gone: E,
    ) -> Result<T, E> {
        let (reply, answer) = bounded(1);
        if self.commands.send(command(reply)).is_err() {
            return Err(gone);
        }
        answer.recv().unwrap_or(Err(gone))
    }

    /// Asks for a process CPU/RSS sample now (during a run). It never
    /// waits for the collector: it raises a flag and wakes the collector,
    /// which takes the sample at its next pass, within moments. Calls made
    /// before that pass are answered by that one sample (merged, never
    /// lost): each call is followed by a sample, but a tight loop of calls
    /// gets one per collector pass, not one per call. Outside a run it does
    /// nothing. A no-op without the `enabled` feature, like every recording
    /// call.
    pub fn sample_process_gauges(&self) {
        if !crate::config::ENABLED || !self.shared.run_open() {
            return;
        }
        self.shared.request_sample();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.shared.forked() {
            // The collector and server threads are the parent's: there is
            // nothing here to stop or join.
            std::mem::forget(self.collector.take());
            #[cfg(feature = "prometheus")]
            std::mem::forget(self.server.take());
            return;
        }
        let _ = self.commands.send(Command::Shutdown);
        if let Some(collector) = self.collector.take() {
            let _ = collector.join();
        }
    }
}

#[cfg(test)]
mod sink_seam;

/// What `build_sinks` gives the recorder: the metrics server, if any.
#[cfg(feature = "prometheus")]
type Server = Option<crate::prometheus::server::MetricsServer>;
#[cfg(not(feature = "prometheus"))]
type Server = ();

/// Builds the collector's sinks, in the order it calls them: the run-file
/// writer, then whatever the features and `config` add. The only place that
/// names a concrete sink or a sink's feature.
fn build_sinks(config: &Config) -> Result<(Server, collector::Sinks), NewRecorderError> {
    let mut sinks: collector::Sinks = vec![Box::<crate::report::RunFileSink>::default()];
    Ok((prometheus_sinks(config, &mut sinks)?, sinks))
}

/// Binds the metrics server when a port is set, starts the push client when
/// a gateway is set, and adds the exposition that feeds both (as the push
/// sink's, when there is a gateway).
#[cfg(feature = "prometheus")]
fn prometheus_sinks(
    config: &Config,
    sinks: &mut collector::Sinks,
) -> Result<Server, NewRecorderError> {
    use crate::prometheus::exposition::Exposition;
    use crate::prometheus::published::Published;
    use crate::prometheus::server::MetricsServer;
    #[cfg(feature = "push")]
    let pusher = match &config.pushgateway {
        Some(url) => {
            let url = crate::prometheus::push::group_url(&url.0, &config.job, &config.grouping)?;
            Some(crate::prometheus::push::Pusher::start(
                url,
                config.push_timeout,
                config.push_auth.clone(),
            )?)
        }
        None => None,
    };
    #[cfg(not(feature = "push"))]
    if config.pushgateway.is_some() {
        return Err(NewRecorderError::PushDisabled);
    }
    let published = Arc::new(Published::default());
    let mut exposition = Exposition::new(
        published.clone(),
        config.namespace.clone(),
        config.buckets.clone(),
        config.publish_interval,
    );
    // Something to scrape from the first moment on.
    exposition.publish(None, &[]);
    let server = match config.port {
        Some(port) => {
            let addr = std::net::SocketAddr::new(config.bind, port);
            let server = MetricsServer::start(addr, published)
                .map_err(|source| NewRecorderError::Serve { addr, source })?;
            Some(server)
        }
        None => None,
    };
    #[cfg(feature = "push")]
    if let Some(pusher) = pusher {
        sinks.push(Box::new(crate::prometheus::push::PushSink::new(
            exposition,
            pusher,
            config.push_interval,
        )));
        return Ok(server);
    }
    if server.is_some() {
        sinks.push(Box::new(exposition));
    }
    Ok(server)
}

#[cfg(not(feature = "prometheus"))]
fn prometheus_sinks(
    config: &Config,
    _sinks: &mut collector::Sinks,
) -> Result<Server, NewRecorderError> {
    if config.port.is_some() {
        return Err(NewRecorderError::PrometheusDisabled);
    }
    if config.pushgateway.is_some() {
        return Err(NewRecorderError::PushDisabled);
    }
    Ok(())
}

fn check_writable(dir: &Path) -> Result<(), StartRunError> {
    use std::io::Write;
    let probe = dir.join(format!(
        ".runmetrics-probe-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let result = std::fs::File::create(&probe).and_then(|mut f| f.write_all(b"probe"));
    let _ = std::fs::remove_file(&probe);
    result.map_err(|source| StartRunError::LogDirNotWritable {
        path: dir.to_owned(),
        source,
    })
}

/// How deep `extra_meta` may nest arrays and objects, itself level 1
/// (`{"a": {"b": [1]}}` is 3 levels). The run file adds one level, so every
/// file nests at most 65, well within what JSON readers accept (serde_json's
/// default limit, which the `runmetrics` command keeps, is 128).
pub(crate) const MAX_EXTRA_META_DEPTH: usize = 64;

/// Whether `v` (level 1) nests arrays and objects deeper than `limit`,
/// counted without recursion and without looking past `limit`.
fn nests_deeper_than(v: &serde_json::Value, limit: usize) -> bool {
    use serde_json::Value;
    let mut todo = vec![(v, 1)];
    while let Some((v, level)) = todo.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        if level > limit {
            return true;
        }
        todo.extend(children.map(|c| (c, level + 1)));
    }
    false
}

/// Drops `v` without recursion. The drop serde_json derives recurses once
/// per level, so a refused value a million levels deep would overflow the
/// caller's stack while `end_run` returns its error.
pub(crate) fn drop_flat(v: serde_json::Value) {
    use serde_json::Value;
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        match v {
            Value::Array(a) => todo.extend(a),
            Value::Object(m) => todo.extend(m.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

fn extra_meta_object(
    extra_meta: serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, EndRunError> {
    use serde_json::Value;
    if nests_deeper_than(&extra_meta, MAX_EXTRA_META_DEPTH) {
        drop_flat(extra_meta);
        return Err(EndRunError::ExtraMetaTooDeep {
            limit: MAX_EXTRA_META_DEPTH,
        });
    }
    let map = match extra_meta {
        Value::Null => serde_json::Map::new(),
        Value::Object(map) => map,
        Value::Array(_) => return Err(EndRunError::ExtraMetaNotObject { found: "an array" }),
        Value::String(_) => return Err(EndRunError::ExtraMetaNotObject { found: "a string" }),
        Value::Number(_) => return Err(EndRunError::ExtraMetaNotObject { found: "a number" }),
        Value::Bool(_) => return Err(EndRunError::ExtraMetaNotObject { found: "a bool" }),
    };
    if let Some(key) = map
        .keys()
        .find(|k| RESERVED_META_KEYS.contains(&k.as_str()))
    {
        return Err(EndRunError::ReservedKey { key: key.clone() });
    }
    Ok(map)
}

static GLOBAL: OnceLock<Recorder> = OnceLock::new();
/// Serialises the creation of the global recorder; remembers how it was made.
static GLOBAL_INIT: Mutex<Option<&'static str>> = Mutex::new(None);

/// Makes `recorder` the global one (with `GLOBAL_INIT` held): its `Shared`
/// first, so whoever finds the recorder finds its `Shared` too
/// (`shared::global_shared`, what the timers of the free functions use).
fn set_global(recorder: Recorder) {
    shared::set_global_shared(recorder.shared.clone());
    let _ = GLOBAL.set(recorder);
}

/// The global recorder, if it exists (never creates it).
pub(crate) fn global() -> Option<&'static Recorder> {
    GLOBAL.get()
}

/// The global recorder, made with the defaults if `init_metrics` was not called.
pub(crate) fn global_or_default() -> Result<&'static Recorder, NewRecorderError> {
    if let Some(r) = GLOBAL.get() {
        return Ok(r);
    }
    let mut how = GLOBAL_INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if GLOBAL.get().is_none() {
        set_global(Recorder::new(Config::default())?);
        *how = Some("with the defaults, by the first start_run");
    }
    Ok(GLOBAL
        .get()
        .expect("runmetrics: global recorder was just set"))
}

pub(crate) fn init_global(config: Config) -> Result<(), InitMetricsError> {
    let mut how = GLOBAL_INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(how) = *how {
        return Err(InitMetricsError::AlreadyInitialized { how });
    }
    config.validate()?;
    set_global(Recorder::new(config)?);
    *how = Some("by an earlier init_metrics call");
    Ok(())
}
