"""What a timed block and a measured call cost from Python, against their
floors and against what a Python user would use instead, in one process.

    python python/bench/bench.py            # the tables BENCHMARKS.md records
    python python/bench/bench.py --quick    # fewer rounds
    python python/bench/bench.py --smoke    # one short round: does it run

Each round times every contender once with timeit (LOOPS iterations each, in
an order that rotates per round), so slow drift of a shared machine hits all
alike; a figure is the median over ROUNDS rounds of ns per iteration, and a
ratio is the median of the per-round ratios. runmetrics is timed inside an
open run (the costly case); "no run open" is the path outside one.

Contenders:
- floor: an empty class with __enter__/__exit__ (`with Empty():`, the floor
  of a with block that makes its object), and an empty functools.wraps
  wrapper (`def w(*a, **k): return f(*a, **k)`).
- seed-style: the pure-Python module the seed describes, as small as it can
  be: time.perf_counter() on entry and exit, an event dict appended to a
  list (with a time.time() timestamp, not formatted), and a totals dict
  updated; and the same with the ISO timestamp the seed's events show
  (datetime.now().astimezone().isoformat()).
- prometheus_client: Histogram.time() as a context manager and as a
  decorator, with labels (module, phase) looked up per block as a phase name
  would be, and without labels.
"""

import datetime
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
import timeit

import prometheus_client

import runmetrics as rm

QUICK = "--quick" in sys.argv
# --smoke: one short round, to check the bench runs (scripts/test); its
# figures mean nothing.
SMOKE = "--smoke" in sys.argv
ROUNDS = 1 if SMOKE else 5 if QUICK else 31
LOOPS = 500 if SMOKE else 20_000 if QUICK else 50_000


# --- the floors --------------------------------------------------------------
class Empty:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def plain():
    pass


@functools.wraps(plain)
def wrapped_floor(*args, **kwargs):
    return plain(*args, **kwargs)


# --- the seed-style pure-Python module ----------------------------------------
EVENTS = []
TOTALS = {}
_pc = time.perf_counter
_now = time.time


class SeedPhaseTimer:
    __slots__ = ("phase", "module", "t0")

    def __init__(self, phase, module="default"):
        self.phase = phase
        self.module = module

    def __enter__(self):
        self.t0 = _pc()
        return self

    def __exit__(self, *exc):
        d = _pc() - self.t0
        EVENTS.append(
            {"timestamp": _now(), "event": "phase_timing", "module": self.module, "phase": self.phase, "duration_seconds": d}
        )
        key = (self.module, self.phase)
        TOTALS[key] = TOTALS.get(key, 0.0) + d
        return None


class SeedPhaseTimerIso(SeedPhaseTimer):
    __slots__ = ()

    def __exit__(self, *exc):
        d = _pc() - self.t0
        EVENTS.append(
            {
                "timestamp": datetime.datetime.now().astimezone().isoformat(),
                "event": "phase_timing",
                "module": self.module,
                "phase": self.phase,
                "duration_seconds": d,
            }
        )
        key = (self.module, self.phase)
        TOTALS[key] = TOTALS.get(key, 0.0) + d
        return None


def seed_measure(name, module="default"):
    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            t0 = _pc()
            try:
                return f(*args, **kwargs)
            finally:
                d = _pc() - t0
                EVENTS.append({"timestamp": _now(), "event": "func_timing", "module": module, "name": name, "duration_seconds": d})
                key = (module, name)
                TOTALS[key] = TOTALS.get(key, 0.0) + d

        return wrapper

    return decorate


# --- prometheus_client ---------------------------------------------------------
REGISTRY = prometheus_client.CollectorRegistry()
H_LABELS = prometheus_client.Histogram("phase_seconds", "phases", ["module", "phase"], registry=REGISTRY)
H_PLAIN = prometheus_client.Histogram("block_seconds", "blocks", registry=REGISTRY)
F_PLAIN = prometheus_client.Histogram("func_seconds", "funcs", registry=REGISTRY)

# --- the measured functions ------------------------------------------------------
measured = rm.measure("infer_step", module="inference")(plain)
seed_measured = seed_measure("infer_step", module="inference")(plain)
prom_measured = F_PLAIN.time()(plain)


class Engine:
    @rm.measure("step", module="engine")
    def step(self):
        pass

    @functools.wraps(plain)
    def step_floor(self, *args, **kwargs):
        return plain(*args, **kwargs)

    def step_plain(self):
        pass


engine = Engine()

PT = rm.PhaseTimer

WITH_CASES = [
    ("Empty class with __enter__/__exit__ (floor)", "with Empty(): pass"),
    ("runmetrics PhaseTimer", 'with PT("grounding", module="pipeline"): pass'),
    ("runmetrics PhaseTimer, no run open", 'with PT("grounding", module="pipeline"): pass'),
    ("seed-style pure Python", 'with SeedPhaseTimer("grounding", module="pipeline"): pass'),
    ("seed-style, ISO timestamps", 'with SeedPhaseTimerIso("grounding", module="pipeline"): pass'),
    ("prometheus_client Histogram.time(), labels", 'with H_LABELS.labels("pipeline", "grounding").time(): pass'),
    ("prometheus_client Histogram.time(), no labels", "with H_PLAIN.time(): pass"),
]

CALL_CASES = [
    ("plain call (no wrapper)", "plain()"),
    ("empty functools.wraps wrapper (floor)", "wrapped_floor()"),
    ("runmetrics @measure", "measured()"),
    ("runmetrics @measure, no run open", "measured()"),
    ("seed-style pure Python", "seed_measured()"),
    ("prometheus_client @Histogram.time()", "prom_measured()"),
    ("method: plain", "engine.step_plain()"),
    ("method: empty functools.wraps wrapper", "engine.step_floor()"),
    ("method: runmetrics @measure", "engine.step()"),
]


def measure_cases(cases, log_dir):
    """{label: [ns per iteration, one per round]}."""
    results = {label: [] for label, _ in cases}
    g = globals()
    for r in range(ROUNDS):
        order = cases[r % len(cases) :] + cases[: r % len(cases)]
        for label, stmt in order:
            off = "no run open" in label
            if off:
                rm.end_run()
                time.sleep(0.05)  # the collector's write done before timing
            t = timeit.timeit(stmt, globals=g, number=LOOPS)
            if off:
                rm.start_run(log_dir=log_dir)
                time.sleep(0.05)
            results[label].append(t / LOOPS * 1e9)
        EVENTS.clear()
    return results


def ratio(results, a, b):
    """Median over rounds of a's time / b's time."""
    return statistics.median(x / y for x, y in zip(results[a], results[b]))


def table(title, results, floor, contenders_vs):
    print(f"\n### {title}\n")
    print(f"| contender | ns per iteration (median of {ROUNDS}) | × floor | runmetrics is × faster |")
    print("|---|---:|---:|---:|")
    for label, times in results.items():
        x_floor = ratio(results, label, floor)
        faster = ""
        if label.startswith(("seed-style", "prometheus_client")):
            faster = f"{ratio(results, label, contenders_vs):.1f}"
        print(f"| {label} | {statistics.median(times):.0f} | {x_floor:.2f} | {faster} |")


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores; {platform.python_implementation()} {platform.python_version()}; load {os.getloadavg()[0]:.1f}"


def main():
    from importlib.metadata import version

    print(f"runmetrics {rm.__version__}, prometheus_client {version('prometheus_client')}")
    print(f"machine: {machine()}; {ROUNDS} rounds of {LOOPS} iterations")
    with tempfile.TemporaryDirectory() as d:
        rm.init_metrics(event_cap=0)
        rm.start_run(log_dir=d)
        with_results = measure_cases(WITH_CASES, d)
        call_results = measure_cases(CALL_CASES, d)
        rm.end_run()
    table("A timed block: `with ...: pass`", with_results, WITH_CASES[0][0], "runmetrics PhaseTimer")
    table("A measured call of an empty function", call_results, CALL_CASES[1][0], "runmetrics @measure")
    print("\n### Targets (issue 18)\n")
    pt, fl = "runmetrics PhaseTimer", WITH_CASES[0][0]
    m, wf = "runmetrics @measure", CALL_CASES[1][0]
    rows = [
        ("PhaseTimer / empty with-class (≤ 2)", ratio(with_results, pt, fl)),
        ("@measure / empty wraps wrapper (≤ 2)", ratio(call_results, m, wf)),
        ("method @measure / method wraps wrapper (≤ 2)", ratio(call_results, "method: runmetrics @measure", "method: empty functools.wraps wrapper")),
        ("seed-style with / PhaseTimer (≥ 5)", ratio(with_results, "seed-style pure Python", pt)),
        ("seed-style ISO with / PhaseTimer (≥ 5)", ratio(with_results, "seed-style, ISO timestamps", pt)),
        ("prometheus_client with, no labels / PhaseTimer (≥ 5)", ratio(with_results, "prometheus_client Histogram.time(), no labels", pt)),
        ("prometheus_client with, labels / PhaseTimer (≥ 5)", ratio(with_results, "prometheus_client Histogram.time(), labels", pt)),
        ("seed-style call / @measure (≥ 5)", ratio(call_results, "seed-style pure Python", m)),
        ("prometheus_client @time() / @measure (≥ 5)", ratio(call_results, "prometheus_client @Histogram.time()", m)),
        ("seed-style with / empty with-class: the most any with-block can gain", ratio(with_results, "seed-style pure Python", fl)),
        ("seed-style call / empty wraps wrapper", ratio(call_results, "seed-style pure Python", wf)),
        ("seed-style call / plain call: the most any wrapper can gain", ratio(call_results, "seed-style pure Python", "plain call (no wrapper)")),
    ]
    print("| ratio | median of per-round ratios |")
    print("|---|---:|")
    for label, r in rows:
        print(f"| {label} | {r:.2f} |")


if __name__ == "__main__":
    main()
