"""Where the time goes in a Python program, recorded by the Rust runmetrics recorder.

The API of the ``metrics`` module, name for name::

    from runmetrics import init_metrics, start_run, end_run, PhaseTimer, measure
    from runmetrics import observe_counts, sample_process_gauges

    init_metrics(port=14233, job="al_inference", grouping={"env": "dev"})
    run_id = start_run(log_dir="metrics_logs")
    with PhaseTimer("grounding", module="pipeline"):
        do_grounding()
    infer_step()                      # decorated with @measure("infer_step", module="inference")
    observe_counts(grounded_rules=10, facts_count=200)
    sample_process_gauges()
    end_run(extra_meta={"facts_final": 100, "rules_total": 50})   # writes metrics_logs/<run_id>.json

Each run writes one JSON file, ``<log_dir>/<run_id>.json``, in the module's
layout (``meta`` and ``events``) with runmetrics' keys added. Timers record
into the calling thread's own buffer (no lock), and a collector thread in Rust
aggregates them. A process made by ``multiprocessing`` (fork or spawn) starts
its own runs and writes its own files.

Errors: every failing operation raises a subclass of :class:`RunmetricsError`
whose message is the Rust error's and whose ``kind`` names its variant.
"""

from __future__ import annotations

import atexit as _atexit
import functools as _functools
import inspect as _inspect
import sys as _sys

from runmetrics._native import (
    EndRunError,
    FlushError,
    FunctionTimer,
    InitMetricsError,
    MeasuredFunction,
    PhaseTimer,
    RunmetricsError,
    StartRunError,
    __version__,
    end_run,
    flush,
    init_metrics,
    is_run_open,
    observe_counts,
    sample_process_gauges,
    start_run,
)
from runmetrics import _native

__all__ = [
    "EndRunError",
    "FlushError",
    "FunctionTimer",
    "InitMetricsError",
    "MeasuredFunction",
    "PhaseTimer",
    "RunmetricsError",
    "StartRunError",
    "end_run",
    "flush",
    "init_metrics",
    "is_run_open",
    "measure",
    "observe_counts",
    "sample_process_gauges",
    "start_run",
]


def measure(name=None, module=None, *, resources=False):
    """Times every call of the decorated function, as a ``func_timing`` event
    and an entry of ``meta.function_durations_seconds_total``.

    ``@measure("infer_step", module="inference")``; ``@measure`` or
    ``@measure()`` names it after the function (``__qualname__``) in its
    module (``__module__``). ``resources=True`` also records the thread's CPU
    time and the change in RSS per call (costs a system call and a /proc read
    per call).

    Works on plain functions, methods (also under ``@staticmethod`` and
    ``@classmethod``), ``async def`` functions (the time runs from the first
    step to the result, awaits included) and generator functions, sync or
    async (from the first ``next`` to exhaustion or close, the consumer's time
    between items included). A call that raises is recorded too, and the
    exception propagates. The wrapper keeps the function's ``__name__``,
    ``__doc__``, ``__wrapped__`` and signature.
    """
    if callable(name) and module is None and not resources:
        # Bare @measure.
        return _wrap(name, None, None, False)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"measure(name=...) must be a str, got {type(name).__name__}")
    if module is not None and not isinstance(module, str):
        raise TypeError(f"measure(module=...) must be a str, got {type(module).__name__}")

    def decorate(func):
        return _wrap(func, name, module, resources)

    return decorate


def _wrap(func, name, module, resources):
    if not callable(func):
        raise TypeError(f"@measure needs a function, got {type(func).__name__}")
    if isinstance(func, (staticmethod, classmethod)):
        raise TypeError(
            "put @measure below @staticmethod/@classmethod (nearer the def), not above"
        )
    if name is None:
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or type(func).__name__
    module = module if module is not None else getattr(func, "__module__", None) or "__main__"
    # The names are interned once, here; each call's timer reuses them.
    measured = MeasuredFunction(func, name, module, resources)
    if _inspect.isasyncgenfunction(func):
        wrapper = _async_generator(func, measured.timer)
    elif _inspect.iscoroutinefunction(func):
        wrapper = _coroutine(func, measured.timer)
    elif _inspect.isgeneratorfunction(func):
        wrapper = _generator(func, measured.timer)
    else:
        wrapper = measured
    return _functools.update_wrapper(wrapper, func)


def _coroutine(func, timer):
    async def measured(*args, **kwargs):
        with timer():
            return await func(*args, **kwargs)

    return measured


def _generator(func, timer):
    def measured(*args, **kwargs):
        with timer():
            return (yield from func(*args, **kwargs))

    return measured


def _async_generator(func, timer):
    async def measured(*args, **kwargs):
        agen = func(*args, **kwargs)
        with timer():
            try:
                item = await agen.__anext__()
                while True:
                    try:
                        sent = yield item
                    except GeneratorExit:
                        await agen.aclose()
                        raise
                    except BaseException as e:
                        item = await agen.athrow(e)
                    else:
                        item = await agen.asend(sent)
            except StopAsyncIteration:
                return

    return measured


# Like dropping a Rust Recorder: a run still open when the interpreter exits
# is ended and written (without extra_meta), so it is not lost.
@_atexit.register
def _end_open_run():
    try:
        _native._end_open_run_at_exit()
    except RunmetricsError as e:  # pragma: no cover - reported, not raised, at exit
        print(f"runmetrics: could not end the open run at exit: {e}", file=_sys.stderr)
