"""Where the time goes in a Python program, recorded by the Rust runmetrics recorder.

The ``metrics`` module's API: ``init_metrics``, ``start_run``, ``end_run``,
``PhaseTimer``, ``measure``, ``observe_counts``, ``sample_process_gauges``.
Each run writes ``<log_dir>/<run_id>.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

__version__: str

_F = TypeVar("_F", bound=Callable[..., Any])
_P = ParamSpec("_P")
_R = TypeVar("_R")

JSON = None | bool | int | float | str | list["JSON"] | tuple["JSON", ...] | dict[str, "JSON"]

class RunmetricsError(Exception):
    """Base of every runmetrics error; the message is the Rust error's."""

    kind: str
    """The Rust error's variant, e.g. ``"NoOpenRun"``, ``"ReservedKey"``."""

class InitMetricsError(RunmetricsError):
    """``init_metrics`` failed. kind: ``AlreadyInitialized``, ``Config`` (a
    setting cannot work), ``Recorder`` (e.g. the port is in use, a bad
    Pushgateway URL)."""

class StartRunError(RunmetricsError):
    """``start_run`` failed. kind: ``RunAlreadyOpen``, ``CreateLogDir``,
    ``LogDirNotWritable``, ``Recorder``."""

class EndRunError(RunmetricsError):
    """``end_run`` failed; the run stays open (except kind ``Push``: the file
    is written, only the push failed). kind: ``NoOpenRun``,
    ``ExtraMetaNotObject``, ``ReservedKey``, ``ExtraMetaTooDeep``,
    ``WriteRunFile``, ``Push``."""

class FlushError(RunmetricsError):
    """``flush`` failed. kind: ``NoOpenRun``, ``WriteRunFile``."""

def init_metrics(
    port: int | None = None,
    job: str | None = None,
    grouping: Mapping[str, str] | None = None,
    pushgateway: str | None = None,
    *,
    sample_interval: float | None = None,
    event_cap: int | None = None,
    flush_interval: float | None = None,
    rotate_every: float | None = None,
    keep_runs: int | None = None,
    max_log_bytes: int | None = None,
    namespace: str | None = None,
    buckets: list[float] | None = None,
    overflow: Literal["drop", "block"] | None = None,
    buffer_records: int | None = None,
    bind: str | None = None,
    keep_all_events: bool = False,
    max_names: int | None = None,
    time_one_in: int | None = None,
) -> None:
    """Sets up this process's recorder: ``/metrics`` on ``port`` (127.0.0.1
    unless ``bind`` says otherwise), the Prometheus ``job`` and ``grouping``
    labels (also written to every run file), and a ``pushgateway`` that
    ``end_run`` pushes to (PUT). Optional: the first ``start_run`` uses the
    defaults. At most once per process.

    Keyword-only, the Rust ``Config``'s settings (intervals in seconds):
    ``sample_interval`` (1), ``event_cap`` (events kept per run, 100 000),
    ``keep_all_events``, ``flush_interval``, ``rotate_every``, ``keep_runs``,
    ``max_log_bytes``, ``namespace``, ``buckets``, ``overflow``,
    ``buffer_records``, ``bind``, ``max_names`` (distinct names kept, 2**18;
    past it they are pooled and counted in ``meta["names"]``),
    ``time_one_in`` (time about one region in n, count every one).

    Raises :class:`InitMetricsError`.
    """

def start_run(log_dir: str | os.PathLike[str] = "metrics_logs") -> str:
    """Opens a run; its file will be ``<log_dir>/<run_id>.json``. Makes
    ``log_dir`` if needed and checks now that it can write there. Returns the
    run id, e.g. ``"20230801-120000-ab12cd"``.

    Raises :class:`StartRunError`.
    """

def end_run(extra_meta: Mapping[str, JSON] | None = None) -> str:
    """Ends the open run, writes its file atomically and returns its path.
    ``extra_meta`` (a dict of JSON values) is added to ``meta``. On an error
    the run stays open: fix the cause and call again, nothing is lost.

    Raises :class:`EndRunError`; ``TypeError``, ``ValueError`` or
    ``OverflowError`` for a value JSON cannot hold.
    """

def flush() -> str:
    """Writes a snapshot of the open run (``meta.in_progress`` true) and
    returns its path once it is on disk; the run stays open.

    Raises :class:`FlushError`.
    """

def is_run_open() -> bool:
    """Whether a run is open in this process."""

def observe_counts(counts: Mapping[str, int] | None = None, /, **kwargs: int) -> None:
    """Records the current value of named counts:
    ``observe_counts(grounded_rules=10, facts_count=200)``, or a dict for
    names that are not identifiers. The file keeps each name's last, min and
    max and how often it was observed, plus a ``counts`` event per call.
    Outside a run it does nothing."""

def sample_process_gauges() -> None:
    """Takes a process CPU and RSS sample now, as a ``process_sample`` event
    (during a run). Never waits."""

class PhaseTimer:
    """Times a phase: ``with PhaseTimer("grounding", module="pipeline"):``.

    The phase runs from ``__enter__`` to ``__exit__`` (an exception ends it
    too and is not swallowed) and belongs to the run open at ``__enter__``.
    ``module`` defaults to the caller's module ``__name__``.
    """

    def __init__(self, phase: str, module: str | None = None) -> None: ...
    def __enter__(self) -> PhaseTimer: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    @property
    def phase(self) -> str:
        """The phase's name."""
    @property
    def module(self) -> str:
        """The phase's module."""
    @property
    def is_recording(self) -> bool:
        """Whether the timer is running and will produce a record."""

class FunctionTimer:
    """Times one call of a function by hand (what ``@measure`` records):
    ``with FunctionTimer("load", module="init", resources=True):``.
    ``resources=True`` also records the thread's CPU time and RSS change."""

    def __init__(self, name: str, module: str | None = None, resources: bool = False) -> None: ...
    def __enter__(self) -> FunctionTimer: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    @property
    def name(self) -> str:
        """The function's name."""
    @property
    def module(self) -> str:
        """The function's module."""
    @property
    def is_recording(self) -> bool:
        """Whether the timer is running and will produce a record."""

class MeasuredFunction(Generic[_P, _R]):
    """A plain function wrapped by ``@measure``; calling it times the call."""

    __wrapped__: Callable[_P, _R]
    def __init__(
        self, func: Callable[_P, _R], name: str, module: str, resources: bool = False
    ) -> None: ...
    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...
    def timer(self) -> FunctionTimer:
        """A new FunctionTimer under this function's names."""
    @property
    def measured_name(self) -> str: ...
    @property
    def measured_module(self) -> str: ...

@overload
def measure(name: _F, /) -> _F: ...
@overload
def measure(
    name: str | None = None, module: str | None = None, *, resources: bool = False
) -> Callable[[_F], _F]: ...
def measure(
    name: str | Callable[..., Any] | None = None,
    module: str | None = None,
    *,
    resources: bool = False,
) -> Any:
    """Times every call of the decorated function:
    ``@measure("infer_step", module="inference")``. Bare ``@measure`` names
    it after the function's ``__qualname__`` in its ``__module__``.

    Works on plain functions, methods, ``async def`` functions (awaits
    included) and generator functions (first item to exhaustion).
    ``resources=True`` also records the thread's CPU time and RSS change per
    call.
    """
