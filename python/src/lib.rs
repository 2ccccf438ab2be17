//! `runmetrics._native`: the Python module's Rust half (PyO3). The package
//! `runmetrics` (`python/runmetrics/__init__.py`) re-exports it and adds
//! `measure`, which picks the wrapper for plain, async and generator
//! functions.
//!
//! The module owns one [`Recorder`] per process (not the crate's global
//! recorder): a forked child cannot use its parent's (its collector stayed in
//! the parent), so a forked child's first `start_run` (or `init_metrics`)
//! makes the child its own.
//! The recorder is leaked, so timers can borrow it for `'static` and a forked
//! child never runs its `Drop`. Timers find it through [`CURRENT`], one
//! atomic load: recording takes no lock of ours, and the crate's own
//! recording path takes none either.
#![deny(missing_docs)]
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pyo3::exceptions::{PyException, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use runmetrics as rm;
use runmetrics::{Config, Events, NewRecorderError, Overflow, Recorder};

pyo3::create_exception!(
    runmetrics,
    RunmetricsError,
    PyException,
    "Base of every runmetrics error. `kind` names the Rust error's variant (e.g. \"NoOpenRun\"); the message is the Rust error's."
);
pyo3::create_exception!(
    runmetrics,
    InitMetricsError,
    RunmetricsError,
    "init_metrics failed: a setting cannot work, it was already called, or the recorder could not start (e.g. the port is in use)."
);
pyo3::create_exception!(
    runmetrics,
    StartRunError,
    RunmetricsError,
    "start_run failed: a run is open, or log_dir cannot be made or written."
);
pyo3::create_exception!(
    runmetrics,
    EndRunError,
    RunmetricsError,
    "end_run failed: no run is open, extra_meta was refused, or the file could not be written. The run stays open (except kind \"Push\": the file is written)."
);
pyo3::create_exception!(
    runmetrics,
    FlushError,
    RunmetricsError,
    "flush failed: no run is open, or the snapshot could not be written (recording goes on)."
);

/// The settings `init_metrics` was given, kept so a forked child can make its
/// own recorder from them (without the parent's port and gateway).
#[derive(Clone, Default)]
struct Settings {
    port: Option<u16>,
    job: Option<String>,
    grouping: Vec<(String, String)>,
    pushgateway: Option<String>,
    sample_interval: Option<Duration>,
    event_cap: Option<Events>,
    flush_interval: Option<Duration>,
    rotate_every: Option<Duration>,
    keep_runs: Option<usize>,
    max_log_bytes: Option<u64>,
    namespace: Option<String>,
    buckets: Option<Vec<f64>>,
    overflow: Option<Overflow>,
    buffer_records: Option<usize>,
    bind: Option<std::net::IpAddr>,
    max_names: Option<usize>,
    time_one_in: Option<u32>,
}

impl Settings {
    /// The `Config`; a forked child's leaves out the port and the gateway,
    /// which are its parent's.
    fn config(&self, in_child: bool) -> Config {
        let mut c = Config::new();
        if let (Some(port), false) = (self.port, in_child) {
            c = c.port(port);
        }
        if let Some(job) = &self.job {
            c = c.job(job.clone());
        }
        for (k, v) in &self.grouping {
            c = c.grouping(k.clone(), v.clone());
        }
        if let (Some(url), false) = (&self.pushgateway, in_child) {
            c = c.pushgateway(url.clone());
        }
        if let Some(d) = self.sample_interval {
            c = c.sample_interval(d);
        }
        if let Some(e) = self.event_cap {
            c = c.events(e);
        }
        if let Some(d) = self.flush_interval {
            c = c.flush_interval(d);
        }
        if let Some(d) = self.rotate_every {
            c = c.rotate_every(d);
        }
        if let Some(n) = self.keep_runs {
            c = c.keep_runs(n);
        }
        if let Some(n) = self.max_log_bytes {
            c = c.max_log_bytes(n);
        }
        if let Some(n) = &self.namespace {
            c = c.namespace(n.clone());
        }
        if let Some(b) = &self.buckets {
            c = c.buckets(b.clone());
        }
        if let Some(o) = self.overflow {
            c = c.overflow(o);
        }
        if let Some(n) = self.buffer_records {
            c = c.buffer_records(n);
        }
        if let Some(a) = self.bind {
            c = c.bind(a);
        }
        if let Some(n) = self.max_names {
            c = c.max_names(n);
        }
        if let Some(n) = self.time_one_in {
            c = c.time_one_in(n);
        }
        c
    }
}

/// This process's recorder and how it came about.
struct State {
    /// The process the state belongs to: another pid means a forked child,
    /// which starts afresh.
    pid: u32,
    recorder: Option<&'static Recorder>,
    /// How the recorder was made, once it was (for `AlreadyInitialized`).
    how: Option<&'static str>,
    /// `init_metrics`' settings (in a forked child: the parent's, which its
    /// recorder uses unless the child calls `init_metrics` itself).
    settings: Settings,
    in_child: bool,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// The recorder timers record to; null until the first `start_run` or
/// `init_metrics`. A forked child sees its parent's until it makes its own:
/// that one is switched off in the child (the crate's fork handler), so its
/// timers record nothing.
static CURRENT: AtomicPtr<Recorder> = AtomicPtr::new(std::ptr::null_mut());

/// Runs `f` on this process's state, resetting it first in a forked child.
/// Never held across a blocking call (the caller copies the recorder out).
fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut guard = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    let pid = std::process::id();
    let state = match guard.take() {
        Some(s) if s.pid == pid => s,
        Some(parent) => State {
            pid,
            recorder: None,
            how: None,
            settings: parent.settings,
            in_child: true,
        },
        None => State {
            pid,
            recorder: None,
            how: None,
            settings: Settings::default(),
            in_child: false,
        },
    };
    let state = guard.insert(state);
    f(state)
}

/// Makes the recorder from the state's settings and publishes it to timers.
fn make_recorder(
    state: &mut State,
    how: &'static str,
) -> Result<&'static Recorder, NewRecorderError> {
    let recorder: &'static Recorder = Box::leak(Box::new(Recorder::new(
        state.settings.config(state.in_child),
    )?));
    state.recorder = Some(recorder);
    state.how = Some(how);
    CURRENT.store(std::ptr::from_ref(recorder).cast_mut(), Ordering::Release);
    Ok(recorder)
}

/// The recorder for timers: this process's, or none.
#[inline]
fn current() -> Option<&'static Recorder> {
    let p = CURRENT.load(Ordering::Acquire);
    // Only `make_recorder` stores, a pointer from `Box::leak`: valid forever.
    std::ptr::NonNull::new(p).map(|p| {
        #[allow(unsafe_code)]
        // SAFETY: `p` came from `Box::leak` in `make_recorder` and is never freed.
        unsafe {
            p.as_ref()
        }
    })
}

/// This process's recorder for a control call, if one was made here.
fn own_recorder() -> Option<&'static Recorder> {
    with_state(|s| s.recorder)
}

/// A Python exception of type `E` with the Rust error's message and `kind`.
fn raise<E: pyo3::PyTypeInfo>(py: Python<'_>, kind: &str, err: &dyn std::fmt::Display) -> PyErr {
    let e = PyErr::from_type(py.get_type::<E>(), err.to_string());
    let _ = e.value(py).setattr("kind", kind);
    e
}

fn start_run_error(py: Python<'_>, e: &rm::StartRunError) -> PyErr {
    let kind = match e {
        rm::StartRunError::RunAlreadyOpen { .. } => "RunAlreadyOpen",
        rm::StartRunError::CreateLogDir { .. } => "CreateLogDir",
        rm::StartRunError::LogDirNotWritable { .. } => "LogDirNotWritable",
        rm::StartRunError::Recorder(_) => "Recorder",
        rm::StartRunError::ForkedChild => "ForkedChild",
        rm::StartRunError::CollectorGone => "CollectorGone",
        _ => "Other",
    };
    raise::<StartRunError>(py, kind, e)
}

fn end_run_error(py: Python<'_>, e: &rm::EndRunError) -> PyErr {
    let kind = match e {
        rm::EndRunError::NoOpenRun => "NoOpenRun",
        rm::EndRunError::ExtraMetaNotObject { .. } => "ExtraMetaNotObject",
        rm::EndRunError::ExtraMetaTooDeep { .. } => "ExtraMetaTooDeep",
        rm::EndRunError::ReservedKey { .. } => "ReservedKey",
        rm::EndRunError::WriteRunFile { .. } => "WriteRunFile",
        rm::EndRunError::ForkedChild => "ForkedChild",
        rm::EndRunError::CollectorGone => "CollectorGone",
        rm::EndRunError::Push { .. } => "Push",
        _ => "Other",
    };
    raise::<EndRunError>(py, kind, e)
}

fn flush_error(py: Python<'_>, e: &rm::FlushError) -> PyErr {
    let kind = match e {
        rm::FlushError::NoOpenRun => "NoOpenRun",
        rm::FlushError::WriteRunFile { .. } => "WriteRunFile",
        rm::FlushError::ForkedChild => "ForkedChild",
        rm::FlushError::CollectorGone => "CollectorGone",
        _ => "Other",
    };
    raise::<FlushError>(py, kind, e)
}

fn init_error(py: Python<'_>, e: &rm::InitMetricsError) -> PyErr {
    let kind = match e {
        rm::InitMetricsError::AlreadyInitialized { .. } => "AlreadyInitialized",
        rm::InitMetricsError::Config(_) => "Config",
        rm::InitMetricsError::Recorder(_) => "Recorder",
        _ => "Other",
    };
    raise::<InitMetricsError>(py, kind, e)
}

/// Seconds (a Python number) as a `Duration`, for the interval settings.
fn seconds(name: &str, s: Option<f64>) -> PyResult<Option<Duration>> {
    s.map(|s| {
        Duration::try_from_secs_f64(s).map_err(|_| {
            PyValueError::new_err(format!(
                "{name} must be a finite number of seconds, at least 0, got {s}"
            ))
        })
    })
    .transpose()
}

/// Sets up this process's recorder: `/metrics` on `port` (127.0.0.1 unless
/// `bind` says otherwise), the Prometheus `job` and `grouping` labels (also
/// written to every run file), and a Pushgateway that `end_run` pushes to.
/// Optional: without it the first `start_run` uses the defaults. At most once
/// per process (a forked child may call it again for itself).
///
/// The keyword-only settings are the Rust `Config`'s, intervals in seconds:
/// `sample_interval`, `event_cap` (events kept per run, default 100 000),
/// `keep_all_events` (keep every event instead), `flush_interval`,
/// `rotate_every`, `keep_runs`, `max_log_bytes`,
/// `namespace`, `buckets` (seconds), `overflow` ("drop" or "block"),
/// `buffer_records`, `bind` (an IP address), `max_names` (distinct names
/// kept; past it they are pooled and counted in `meta.names`),
/// `time_one_in` (time about one region in n, count every one).
///
/// Raises InitMetricsError with the Rust error's message.
#[pyfunction]
#[pyo3(signature = (port=None, job=None, grouping=None, pushgateway=None, *,
    sample_interval=None, event_cap=None, flush_interval=None, rotate_every=None,
    keep_runs=None, max_log_bytes=None, namespace=None, buckets=None, overflow=None,
    buffer_records=None, bind=None, keep_all_events=false, max_names=None, time_one_in=None))]
#[allow(clippy::too_many_arguments)]
fn init_metrics(
    py: Python<'_>,
    port: Option<u16>,
    job: Option<String>,
    grouping: Option<HashMap<String, String>>,
    pushgateway: Option<String>,
    sample_interval: Option<f64>,
    event_cap: Option<usize>,
    flush_interval: Option<f64>,
    rotate_every: Option<f64>,
    keep_runs: Option<usize>,
    max_log_bytes: Option<u64>,
    namespace: Option<String>,
    buckets: Option<Vec<f64>>,
    overflow: Option<String>,
    buffer_records: Option<usize>,
    bind: Option<String>,
    keep_all_events: bool,
    max_names: Option<usize>,
    time_one_in: Option<u32>,
) -> PyResult<()> {
    let overflow = match overflow.as_deref() {
        None => None,
        Some("drop") => Some(Overflow::Drop),
        Some("block") => Some(Overflow::Block),
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "overflow must be \"drop\" or \"block\", got {other:?}"
            )))
        }
    };
    let bind = bind
        .map(|a| {
            a.parse().map_err(|_| {
                PyValueError::new_err(format!(
                    "bind must be an IP address like \"0.0.0.0\", got {a:?}"
                ))
            })
        })
        .transpose()?;
    let mut grouping: Vec<(String, String)> = grouping.unwrap_or_default().into_iter().collect();
    grouping.sort();
    let events = match (keep_all_events, event_cap) {
        (true, _) => Some(Events::All),
        (false, Some(n)) => Some(Events::First(n)),
        (false, None) => None,
    };
    let settings = Settings {
        port,
        job,
        grouping,
        pushgateway,
        sample_interval: seconds("sample_interval", sample_interval)?,
        event_cap: events,
        flush_interval: seconds("flush_interval", flush_interval)?,
        rotate_every: seconds("rotate_every", rotate_every)?,
        keep_runs,
        max_log_bytes,
        namespace,
        buckets,
        overflow,
        buffer_records,
        bind,
        max_names,
        time_one_in,
    };
    with_state(|state| {
        if let Some(how) = state.how {
            return Err(rm::InitMetricsError::AlreadyInitialized { how });
        }
        // A refused call leaves nothing behind: the settings are kept only
        // once the recorder runs.
        let old = std::mem::replace(&mut state.settings, settings);
        let old_in_child = std::mem::replace(&mut state.in_child, false);
        make_recorder(state, "by an earlier init_metrics call").map_err(|e| {
            state.settings = old;
            state.in_child = old_in_child;
            match e {
                NewRecorderError::Config(c) => rm::InitMetricsError::Config(c),
                e => rm::InitMetricsError::Recorder(e),
            }
        })?;
        Ok(())
    })
    .map_err(|e| init_error(py, &e))
}

/// Opens a run; its file will be `<log_dir>/<run_id>.json`. Makes `log_dir`
/// if needed and checks now that it can write there. Returns the run id,
/// e.g. "20230801-120000-ab12cd".
///
/// Raises rm::StartRunError (kind RunAlreadyOpen, CreateLogDir,
/// LogDirNotWritable, Recorder) with the Rust error's message.
#[pyfunction]
#[pyo3(signature = (log_dir="metrics_logs".into()), text_signature = "(log_dir='metrics_logs')")]
fn start_run(py: Python<'_>, log_dir: PathBuf) -> PyResult<String> {
    let recorder = with_state(|state| match state.recorder {
        Some(r) => Ok(r),
        None => make_recorder(state, "with the defaults, by the first start_run"),
    })
    .map_err(|e| start_run_error(py, &rm::StartRunError::Recorder(e)))?;
    py.detach(|| recorder.start_run(&log_dir))
        .map_err(|e| start_run_error(py, &e))
}

/// Ends the open run and writes its file atomically; returns the file's path.
/// `extra_meta` (a dict of JSON values, or None) is added to `meta`.
///
/// Everything recorded before the call, on every thread, is in the file. On
/// an error the run stays open, so fix the cause and call again: nothing
/// recorded is lost (kind "Push" is the exception: the file is written, the
/// run ended, only the push failed).
///
/// Raises EndRunError (kind NoOpenRun, ExtraMetaNotObject, ReservedKey,
/// ExtraMetaTooDeep, WriteRunFile, Push) with the Rust error's message;
/// TypeError, ValueError or OverflowError for a value JSON cannot hold.
#[pyfunction]
#[pyo3(signature = (extra_meta=None))]
fn end_run(py: Python<'_>, extra_meta: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
    let Some(recorder) = own_recorder() else {
        return Err(end_run_error(py, &rm::EndRunError::NoOpenRun));
    };
    let extra = match extra_meta {
        None => serde_json::Value::Null,
        Some(v) if v.is_none() => serde_json::Value::Null,
        Some(v) => to_json(v, "extra_meta", 1)?,
    };
    py.detach(|| recorder.end_run(extra))
        .map(|p| p.display().to_string())
        .map_err(|e| end_run_error(py, &e))
}

/// Writes a snapshot of the open run to its file now (`meta.in_progress`
/// true) and returns its path once it is on disk; the run stays open.
///
/// Raises rm::FlushError with the Rust error's message.
#[pyfunction]
fn flush(py: Python<'_>) -> PyResult<String> {
    let Some(recorder) = own_recorder() else {
        return Err(flush_error(py, &rm::FlushError::NoOpenRun));
    };
    py.detach(|| recorder.flush())
        .map(|p| p.display().to_string())
        .map_err(|e| flush_error(py, &e))
}

/// Whether a run is open in this process.
#[pyfunction]
fn is_run_open() -> bool {
    own_recorder().is_some_and(Recorder::is_run_open)
}

/// Records the current value of named counts, e.g.
/// `observe_counts(grounded_rules=10, facts_count=200)`, or a dict for names
/// that are not identifiers. The run file keeps each name's last, min and max
/// and how often it was observed, and one `counts` event per call. Outside a
/// run it does nothing. Values are integers (int or anything with
/// `__index__`); TypeError otherwise, OverflowError outside 64 bits.
#[pyfunction]
#[pyo3(signature = (counts=None, /, **kwargs))]
fn observe_counts(
    counts: Option<&Bound<'_, PyDict>>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<()> {
    let mut owned: Vec<(Bound<'_, PyString>, i64)> = Vec::new();
    for dict in [counts, kwargs].into_iter().flatten() {
        for (k, v) in dict.iter() {
            let k = k.cast_into::<PyString>().map_err(|e| {
                PyTypeError::new_err(format!(
                    "observe_counts names must be str, got {}",
                    e.into_inner().get_type()
                ))
            })?;
            let n = if v.is_instance_of::<PyFloat>() {
                return Err(PyTypeError::new_err(format!(
                    "observe_counts({k}=...) needs an integer, got the float {v}"
                )));
            } else {
                v.extract::<i64>()?
            };
            owned.push((k, n));
        }
    }
    let Some(recorder) = current() else {
        return Ok(());
    };
    let names: Vec<(&str, i64)> = owned
        .iter()
        .map(|(k, n)| Ok((k.to_str()?, *n)))
        .collect::<PyResult<_>>()?;
    recorder.observe_counts(&names);
    Ok(())
}

/// Takes a process CPU and RSS sample now, as a `process_sample` event
/// (during a run; the collector also samples every `sample_interval`).
/// Never waits: calls made before the collector's next pass share its sample.
#[pyfunction]
fn sample_process_gauges() {
    if let Some(r) = current() {
        r.sample_process_gauges();
    }
}

/// Ends this process's open run, if any (registered with `atexit`): what
/// dropping a Rust `Recorder` does. Returns the file's path.
#[pyfunction]
fn _end_open_run_at_exit(py: Python<'_>) -> PyResult<Option<String>> {
    match own_recorder() {
        Some(r) if r.is_run_open() => end_run(py, None).map(Some),
        _ => Ok(None),
    }
}

/// The Python value `v` as JSON; `path` names it in errors. Below
/// `MAX_CONVERT_DEPTH` containers are cut off: the crate refuses anything
/// deeper than its own limit (64) with `ExtraMetaTooDeep`, so a deeper value
/// (or a dict that holds itself) gets the crate's error, never a stack
/// overflow here.
fn to_json(v: &Bound<'_, PyAny>, path: &str, depth: usize) -> PyResult<serde_json::Value> {
    use serde_json::Value;
    const MAX_CONVERT_DEPTH: usize = 100;
    if v.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if v.is_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(i.into());
        }
        if let Ok(u) = v.extract::<u64>() {
            return Ok(u.into());
        }
        return Err(PyOverflowError::new_err(format!(
            "{path} = {v} does not fit in 64 bits; store it as a string"
        )));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        let f = f.value();
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| {
                PyValueError::new_err(format!("{path} = {f}: JSON has no NaN or infinity"))
            });
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    let is_list = v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>();
    let is_dict = v.is_instance_of::<PyDict>();
    if (is_list || is_dict) && depth > MAX_CONVERT_DEPTH {
        // Deeper than the crate accepts: its check refuses the whole value.
        return Ok(Value::Array(Vec::new()));
    }
    if is_list {
        let items = v.try_iter()?;
        let mut out = Vec::new();
        for (i, item) in items.enumerate() {
            out.push(to_json(&item?, &format!("{path}[{i}]"), depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut out = serde_json::Map::new();
        for (k, item) in d.iter() {
            let Ok(k) = k.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "{path} has the key {} of type {}; JSON keys are str",
                    k.repr()?,
                    k.get_type().name()?
                )));
            };
            let key = k.to_str()?.to_owned();
            let value = to_json(&item, &format!("{path}[{key:?}]"), depth + 1)?;
            out.insert(key, value);
        }
        return Ok(Value::Object(out));
    }
    Err(PyTypeError::new_err(format!(
        "{path} is a {}, which JSON cannot hold; use dict, list, tuple, str, int, float, bool or None",
        v.get_type().name()?
    )))
}

/// The caller's module name (`__name__` of the calling frame's globals), the
/// default `module` of a timer, as Rust's default is `module_path!()`.
fn caller_module(py: Python<'_>) -> Bound<'_, PyString> {
    #[allow(unsafe_code)]
    // SAFETY: the GIL is held; PyEval_GetGlobals returns a borrowed reference
    // to the executing frame's globals (the caller's: this is a C call from
    // it) or NULL, which `from_borrowed_ptr_or_opt` turns into None.
    let globals = unsafe { Bound::from_borrowed_ptr_or_opt(py, pyo3::ffi::PyEval_GetGlobals()) };
    globals
        .and_then(|g| g.cast_into::<PyDict>().ok())
        .and_then(|g| g.get_item("__name__").ok().flatten())
        .and_then(|n| n.cast_into::<PyString>().ok())
        .unwrap_or_else(|| PyString::intern(py, "__main__"))
}

/// One entry of [`NAMES`]: two Python strings' addresses and their text,
/// interned.
#[derive(Clone, Copy)]
struct NameEntry {
    name: usize,
    module: usize,
    names: (&'static str, &'static str),
}

/// Entries per thread in [`NAMES`].
const NAME_CACHE: usize = 256;

thread_local! {
    /// Per thread, direct-mapped by the two `str` objects' addresses: the
    /// names a timer was last made with there. A hit also compares the text
    /// (a `str` freed and another made at its address is a miss), so no
    /// reference is held and no hash computed.
    static NAMES: [std::cell::Cell<NameEntry>; NAME_CACHE] = const {
        [const { std::cell::Cell::new(NameEntry { name: 0, module: 0, names: ("", "") }) }; NAME_CACHE]
    };
}

/// `(name, module)` as interned `'static` strings, so that the timer takes
/// the crate's per-call-site path (`Recorder::phase`, a pointer-keyed cache)
/// rather than hashing the names on every call: a string literal is the same
/// `str` object at every call, so [`NAMES`] hits.
#[inline]
fn names_of(
    name: &Bound<'_, PyString>,
    module: &Bound<'_, PyString>,
) -> PyResult<(&'static str, &'static str)> {
    let (np, mp) = (name.as_ptr() as usize, module.as_ptr() as usize);
    let slot = ((np >> 4) ^ (mp >> 9)) % NAME_CACHE;
    let (n, m) = (name.to_str()?, module.to_str()?);
    let found = NAMES.try_with(|cache| {
        let e = cache[slot].get();
        if e.name == np && e.module == mp && e.names.0 == n && e.names.1 == m {
            return e.names;
        }
        let names = static_names(n, m);
        cache[slot].set(NameEntry {
            name: np,
            module: mp,
            names,
        });
        names
    });
    Ok(found.unwrap_or_else(|_| static_names(n, m)))
}

/// Interns `(name, module)` as `'static` strings, once per distinct pair
/// (a lock, only on a miss of [`NAMES`] or when `@measure` decorates). Names
/// are kept for the life of the process, as the crate keeps every name.
fn static_names(name: &str, module: &str) -> (&'static str, &'static str) {
    type Names = HashMap<(String, String), (&'static str, &'static str)>;
    static INTERNED: Mutex<Option<Names>> = Mutex::new(None);
    let mut guard = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    *guard
        .get_or_insert_with(HashMap::new)
        .entry((name.to_owned(), module.to_owned()))
        .or_insert_with(|| {
            (
                Box::leak(name.to_owned().into_boxed_str()),
                Box::leak(module.to_owned().into_boxed_str()),
            )
        })
}

/// A timer's names, `module` defaulting to the caller's module.
fn timer_names(
    py: Python<'_>,
    name: &Bound<'_, PyString>,
    module: Option<&Bound<'_, PyString>>,
) -> PyResult<(&'static str, &'static str)> {
    match module {
        Some(m) => names_of(name, m),
        None => names_of(name, &caller_module(py)),
    }
}

/// Times a phase of the code: `with PhaseTimer("grounding", module="pipeline"):`.
///
/// The phase runs from `__enter__` to `__exit__` (an exception in the block
/// ends it too, and is not swallowed) and belongs to the run open at
/// `__enter__`; with no run open it records nothing. `module` defaults to the
/// caller's module `__name__`. A timer may be entered again after it exits,
/// but not while it runs: nest two timers instead.
#[pyclass(module = "runmetrics", name = "PhaseTimer")]
struct PhaseTimer {
    phase: &'static str,
    module: &'static str,
    active: Option<runmetrics::PhaseTimer<'static>>,
}

#[pymethods]
impl PhaseTimer {
    #[new]
    #[pyo3(signature = (phase, module=None))]
    fn new(
        py: Python<'_>,
        phase: &Bound<'_, PyString>,
        module: Option<&Bound<'_, PyString>>,
    ) -> PyResult<Self> {
        let (phase, module) = timer_names(py, phase, module)?;
        Ok(PhaseTimer {
            phase,
            module,
            active: None,
        })
    }

    fn __enter__<'py>(mut slf: PyRefMut<'py, Self>) -> PyResult<PyRefMut<'py, Self>> {
        if slf.active.is_some() {
            return Err(PyRuntimeError::new_err(
                "this PhaseTimer is already running; nest a new PhaseTimer for a phase inside it",
            ));
        }
        if let Some(rec) = current() {
            slf.active = Some(rec.phase(slf.phase, slf.module));
        }
        Ok(slf)
    }

    fn __exit__(
        &mut self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        self.active = None;
        false
    }

    /// The phase's name.
    #[getter]
    fn phase(&self) -> &'static str {
        self.phase
    }

    /// The phase's module.
    #[getter]
    fn module(&self) -> &'static str {
        self.module
    }

    /// Whether the timer is running and will produce a record (a run was
    /// open when it was entered).
    #[getter]
    fn is_recording(&self) -> bool {
        self.active.as_ref().is_some_and(|t| t.is_recording())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.borrow();
        let py = slf.py();
        Ok(format!(
            "PhaseTimer({}, module={})",
            PyString::new(py, this.phase).repr()?,
            PyString::new(py, this.module).repr()?
        ))
    }
}

/// Times a call of a function: the context-manager form of `@measure`,
/// `with FunctionTimer("load", module="init"):`. `resources=True` also
/// records the thread's CPU time and the change in RSS over the call (a
/// system call and a /proc read per call). `module` defaults to the caller's
/// module `__name__`.
#[pyclass(module = "runmetrics", name = "FunctionTimer")]
struct FunctionTimer {
    name: &'static str,
    module: &'static str,
    resources: bool,
    active: Option<runmetrics::FunctionTimer<'static>>,
}

#[pymethods]
impl FunctionTimer {
    #[new]
    #[pyo3(signature = (name, module=None, resources=false))]
    fn new(
        py: Python<'_>,
        name: &Bound<'_, PyString>,
        module: Option<&Bound<'_, PyString>>,
        resources: bool,
    ) -> PyResult<Self> {
        let (name, module) = timer_names(py, name, module)?;
        Ok(FunctionTimer {
            name,
            module,
            resources,
            active: None,
        })
    }

    fn __enter__<'py>(mut slf: PyRefMut<'py, Self>) -> PyResult<PyRefMut<'py, Self>> {
        if slf.active.is_some() {
            return Err(PyRuntimeError::new_err(
                "this FunctionTimer is already running; use a new one for a call inside it",
            ));
        }
        slf.active = start_function(slf.name, slf.module, slf.resources);
        Ok(slf)
    }

    fn __exit__(
        &mut self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        self.active = None;
        false
    }

    /// The function's name.
    #[getter]
    fn name(&self) -> &'static str {
        self.name
    }

    /// The function's module.
    #[getter]
    fn module(&self) -> &'static str {
        self.module
    }

    /// Whether the timer is running and will produce a record.
    #[getter]
    fn is_recording(&self) -> bool {
        self.active.as_ref().is_some_and(|t| t.is_recording())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.borrow();
        let py = slf.py();
        Ok(format!(
            "FunctionTimer({}, module={}, resources={})",
            PyString::new(py, this.name).repr()?,
            PyString::new(py, this.module).repr()?,
            if this.resources { "True" } else { "False" }
        ))
    }
}

#[inline]
fn start_function(
    name: &'static str,
    module: &'static str,
    resources: bool,
) -> Option<runmetrics::FunctionTimer<'static>> {
    let t = current()?.function(name, module);
    Some(if resources { t.with_resources() } else { t })
}

/// A plain function wrapped by `@measure`: calling it times the call.
/// `runmetrics.measure` makes it and copies the function's `__name__`,
/// `__doc__`, `__wrapped__` ... onto it (`functools.update_wrapper`); it binds
/// as a method does (`__get__`).
#[pyclass(module = "runmetrics", name = "MeasuredFunction", dict, frozen)]
struct Measured {
    func: Py<PyAny>,
    name: &'static str,
    module: &'static str,
    resources: bool,
}

#[pymethods]
impl Measured {
    #[new]
    #[pyo3(signature = (func, name, module, resources=false))]
    fn new(func: Py<PyAny>, name: &str, module: &str, resources: bool) -> Self {
        let (name, module) = static_names(name, module);
        Measured {
            func,
            name,
            module,
            resources,
        }
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let _t = start_function(self.name, self.module, self.resources);
        self.func.bind(py).call(args, kwargs).map(Bound::unbind)
    }

    fn __get__(
        slf: &Bound<'_, Self>,
        obj: Option<&Bound<'_, PyAny>>,
        _owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match obj {
            Some(obj) if !obj.is_none() => bound_method(slf.as_any(), obj),
            _ => Ok(slf.clone().into_any().unbind()),
        }
    }

    /// Pickles by reference, as a function does: the name it is found under
    /// in its module (`__qualname__`, which `functools.update_wrapper` copied
    /// from the function), so a measured function can be a
    /// `multiprocessing` target.
    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.getattr("__qualname__").map(Bound::unbind)
    }

    /// A new, not yet entered `FunctionTimer` for one call under this
    /// function's names (the async and generator wrappers use it).
    fn timer(&self) -> FunctionTimer {
        FunctionTimer {
            name: self.name,
            module: self.module,
            resources: self.resources,
            active: None,
        }
    }

    /// The measured name.
    #[getter]
    fn measured_name(&self) -> &'static str {
        self.name
    }

    /// The measured module.
    #[getter]
    fn measured_module(&self) -> &'static str {
        self.module
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<measured {:?} module={:?} of {}>",
            self.name,
            self.module,
            self.func.bind(py).repr()?
        ))
    }
}

#[allow(unsafe_code)]
extern "C" {
    /// CPython's `types.MethodType(func, self)` constructor (not in pyo3-ffi).
    fn PyMethod_New(
        func: *mut pyo3::ffi::PyObject,
        slf: *mut pyo3::ffi::PyObject,
    ) -> *mut pyo3::ffi::PyObject;
}

/// `types.MethodType(func, obj)`, as a function's `__get__` makes it.
fn bound_method(func: &Bound<'_, PyAny>, obj: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = func.py();
    #[allow(unsafe_code)]
    // SAFETY: both pointers are live objects borrowed for the call (the GIL is
    // held); PyMethod_New takes its own references and returns a new one or
    // NULL with an exception set, which `from_owned_ptr_or_err` handles.
    unsafe {
        Bound::from_owned_ptr_or_err(py, PyMethod_New(func.as_ptr(), obj.as_ptr()))
            .map(Bound::unbind)
    }
}

/// The arguments of a timer's constructor, taken from a vectorcall: the
/// positional ones, then those named in `kwnames`, by `params`' names.
/// Errors read as CPython's own for a Python function with these parameters.
fn timer_args<'py, const N: usize>(
    py: Python<'py>,
    what: &str,
    params: [&str; N],
    args: &[*mut pyo3::ffi::PyObject],
    kwnames: Option<Bound<'py, PyTuple>>,
) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
    let mut out: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
    let npos = args.len() - kwnames.as_ref().map_or(0, |k| k.len());
    if npos > N {
        return Err(PyTypeError::new_err(format!(
            "{what}() takes at most {N} positional arguments ({npos} given)"
        )));
    }
    for (slot, &a) in out.iter_mut().zip(&args[..npos]) {
        #[allow(unsafe_code)]
        // SAFETY: vectorcall's argument array holds live borrowed references.
        let a = unsafe { Bound::from_borrowed_ptr(py, a) };
        *slot = Some(a);
    }
    if let Some(names) = kwnames {
        for (name, &value) in names.iter().zip(&args[npos..]) {
            let name = name.cast_into::<PyString>()?;
            let key = name.to_str()?;
            let Some(i) = params.iter().position(|p| *p == key) else {
                return Err(PyTypeError::new_err(format!(
                    "{what}() got an unexpected keyword argument '{key}'"
                )));
            };
            if out[i].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{what}() got multiple values for argument '{key}'"
                )));
            }
            #[allow(unsafe_code)]
            // SAFETY: as above, the values follow the positional arguments.
            let value = unsafe { Bound::from_borrowed_ptr(py, value) };
            out[i] = Some(value);
        }
    }
    Ok(out)
}

/// `Some(str)` for a given, non-None argument; TypeError for another type.
fn opt_str<'a, 'py>(
    what: &str,
    param: &str,
    v: &'a Option<Bound<'py, PyAny>>,
) -> PyResult<Option<&'a Bound<'py, PyString>>> {
    match v {
        None => Ok(None),
        Some(v) if v.is_none() && param != "name" && param != "phase" => Ok(None),
        Some(v) => v.cast::<PyString>().map(Some).map_err(|_| {
            PyTypeError::new_err(format!(
                "{what}() argument '{param}' must be str, not {}",
                v.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        }),
    }
}

/// Calls `make` as the body of a vectorcall: a new reference, or NULL with
/// the error set (a panic becomes a RuntimeError).
fn vectorcall_body(
    make: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>>,
) -> *mut pyo3::ffi::PyObject {
    #[allow(unsafe_code)]
    // SAFETY: a vectorcall is made with the interpreter attached.
    let py = unsafe { Python::assume_attached() };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| make(py)))
        .unwrap_or_else(|_| {
            Err(PyRuntimeError::new_err(
                "runmetrics: a timer's constructor panicked",
            ))
        });
    match result {
        Ok(obj) => obj.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// The argument slice and keyword names of a vectorcall.
///
/// # Safety
/// `args`, `nargsf` and `kwnames` must be a vectorcall's, with the
/// interpreter attached.
#[allow(unsafe_code)]
unsafe fn vectorcall_args<'a, 'py>(
    py: Python<'py>,
    args: *const *mut pyo3::ffi::PyObject,
    nargsf: usize,
    kwnames: *mut pyo3::ffi::PyObject,
) -> (&'a [*mut pyo3::ffi::PyObject], Option<Bound<'py, PyTuple>>) {
    // SAFETY: the caller passes a vectorcall's arguments.
    unsafe {
        let npos = pyo3::ffi::PyVectorcall_NARGS(nargsf) as usize;
        let kw = Bound::from_borrowed_ptr_or_opt(py, kwnames)
            .map(|k| k.cast_into_unchecked::<PyTuple>());
        let n = npos + kw.as_ref().map_or(0, |k| k.len());
        let args = if n == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(args, n)
        };
        (args, kw)
    }
}

/// `PhaseTimer(...)` as a vectorcall, set as the type's `tp_vectorcall`:
/// calling a PyO3 class goes through `tp_new`, which makes the interpreter
/// build an argument tuple and a keyword dict per call (most of a timed
/// block's cost in a `with`). A subclass does not inherit it and takes
/// `#[new]`.
#[allow(unsafe_code)]
unsafe extern "C" fn phase_timer_vectorcall(
    _callable: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargsf: usize,
    kwnames: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    vectorcall_body(|py| {
        // SAFETY: these are this vectorcall's arguments.
        let (args, kw) = unsafe { vectorcall_args(py, args, nargsf, kwnames) };
        let [phase, module] = timer_args(py, "PhaseTimer", ["phase", "module"], args, kw)?;
        let Some(phase) = opt_str("PhaseTimer", "phase", &phase)? else {
            return Err(PyTypeError::new_err(
                "PhaseTimer() missing required argument 'phase'",
            ));
        };
        let module = opt_str("PhaseTimer", "module", &module)?;
        let (phase, module) = timer_names(py, phase, module)?;
        Ok(Py::new(
            py,
            PhaseTimer {
                phase,
                module,
                active: None,
            },
        )?
        .into_any())
    })
}

/// `FunctionTimer(...)` as a vectorcall; see [`phase_timer_vectorcall`].
#[allow(unsafe_code)]
unsafe extern "C" fn function_timer_vectorcall(
    _callable: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargsf: usize,
    kwnames: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    vectorcall_body(|py| {
        // SAFETY: these are this vectorcall's arguments.
        let (args, kw) = unsafe { vectorcall_args(py, args, nargsf, kwnames) };
        let [name, module, resources] = timer_args(
            py,
            "FunctionTimer",
            ["name", "module", "resources"],
            args,
            kw,
        )?;
        let Some(name) = opt_str("FunctionTimer", "name", &name)? else {
            return Err(PyTypeError::new_err(
                "FunctionTimer() missing required argument 'name'",
            ));
        };
        let module = opt_str("FunctionTimer", "module", &module)?;
        let resources = match resources {
            Some(r) => r.is_truthy()?,
            None => false,
        };
        let (name, module) = timer_names(py, name, module)?;
        Ok(Py::new(
            py,
            FunctionTimer {
                name,
                module,
                resources,
                active: None,
            },
        )?
        .into_any())
    })
}

/// Sets `T`'s `tp_vectorcall`, so calling the class skips `tp_new`'s tuple
/// and dict.
fn set_vectorcall<T: pyo3::PyTypeInfo>(py: Python<'_>, f: pyo3::ffi::vectorcallfunc) {
    let ty = py.get_type::<T>();
    #[allow(unsafe_code)]
    // SAFETY: the type object is ours, alive (the module holds it), and not
    // yet called; CPython reads `tp_vectorcall` when a type is called
    // (`PyType_Type` has `Py_TPFLAGS_HAVE_VECTORCALL`), and a NULL or set
    // slot are both valid. PyType_Modified drops any cached lookups.
    unsafe {
        (*ty.as_type_ptr()).tp_vectorcall = Some(f);
        pyo3::ffi::PyType_Modified(ty.as_type_ptr());
    }
}

/// The native half of the `runmetrics` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(init_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(start_run, m)?)?;
    m.add_function(wrap_pyfunction!(end_run, m)?)?;
    m.add_function(wrap_pyfunction!(flush, m)?)?;
    m.add_function(wrap_pyfunction!(is_run_open, m)?)?;
    m.add_function(wrap_pyfunction!(observe_counts, m)?)?;
    m.add_function(wrap_pyfunction!(sample_process_gauges, m)?)?;
    m.add_function(wrap_pyfunction!(_end_open_run_at_exit, m)?)?;
    m.add_class::<PhaseTimer>()?;
    m.add_class::<FunctionTimer>()?;
    m.add_class::<Measured>()?;
    set_vectorcall::<PhaseTimer>(py, phase_timer_vectorcall);
    set_vectorcall::<FunctionTimer>(py, function_timer_vectorcall);
    m.add("RunmetricsError", py.get_type::<RunmetricsError>())?;
    m.add("InitMetricsError", py.get_type::<InitMetricsError>())?;
    m.add("StartRunError", py.get_type::<StartRunError>())?;
    m.add("EndRunError", py.get_type::<EndRunError>())?;
    m.add("FlushError", py.get_type::<FlushError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
