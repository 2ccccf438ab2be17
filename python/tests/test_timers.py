"""PhaseTimer, FunctionTimer and @measure on each kind of function: what each
records, checked against time.perf_counter spans taken around and inside each
region (an independent clock), and against the calls the test made."""

from conftest import entry, events, load

PRELUDE = """
import asyncio, functools, inspect, json, os, time
import runmetrics as rm
rm.start_run(log_dir="logs")
def done(**extra):
    path = os.path.abspath(rm.end_run())
    print(json.dumps(dict(path=path, **extra)))
"""


def test_phase_durations_lie_between_inner_and_outer_spans(run_py):
    out = run_py(
        PRELUDE
        + """
spans = []
for ms in [1, 5, 10, 20]:
    outer0 = time.perf_counter()
    with rm.PhaseTimer("sleep", module="t"):
        inner0 = time.perf_counter()
        time.sleep(ms / 1000)
        inner = time.perf_counter() - inner0
    spans.append((inner, time.perf_counter() - outer0))
done(spans=spans)
"""
    )
    file = load(out["path"])
    evs = events(file, "phase_timing", "sleep")
    assert len(evs) == 4
    for e, (inner, outer) in zip(evs, out["spans"]):
        assert e["module"] == "t"
        assert inner <= e["duration_seconds"] <= outer, (e, inner, outer)
    p = entry(file, "phase", "sleep")
    assert p["count"] == 4
    total = sum(e["duration_seconds"] for e in evs)
    assert abs(p["duration_seconds_total"] - total) < 1e-6
    assert p["min_seconds"] == min(e["duration_seconds"] for e in evs)
    assert p["max_seconds"] == max(e["duration_seconds"] for e in evs)


def test_phase_timer_module_default_reentry_exceptions_and_no_run(run_py):
    out = run_py(
        """
import json, os
import runmetrics as rm
with rm.PhaseTimer("before_any_run") as t0:
    off = t0.is_recording
rm.start_run(log_dir="logs")
t = rm.PhaseTimer("reused", module="m")
for _ in range(3):
    with t:
        pass
try:
    with t:
        with t:
            pass
    reentry = None
except RuntimeError as e:
    reentry = str(e)
try:
    with rm.PhaseTimer("raises", module="m") as r:
        on = r.is_recording
        raise KeyError("boom")
    swallowed = True
except KeyError:
    swallowed = False
d = rm.PhaseTimer("x")
path = os.path.abspath(rm.end_run())
with rm.PhaseTimer("after_the_run") as t1:
    off_after = t1.is_recording
print(json.dumps(dict(path=path, off=off, on=on, off_after=off_after, reentry=reentry,
                      swallowed=swallowed, default_module=d.module, repr=repr(t))))
"""
    )
    file = load(out["path"])
    assert out["off"] is False and out["off_after"] is False and out["on"] is True
    assert out["default_module"] == "__main__"
    assert out["repr"] == "PhaseTimer('reused', module='m')"
    assert "already running" in out["reentry"]
    assert out["swallowed"] is False
    # 3 uses, plus the outer `with t` of the re-entry attempt.
    assert entry(file, "phase", "reused")["count"] == 4
    assert entry(file, "phase", "raises")["count"] == 1
    assert entry(file, "phase", "before_any_run") is None
    assert file["meta"]["records_outside_run"] == 0


def test_measure_on_functions_methods_static_and_class_methods(run_py):
    out = run_py(
        PRELUDE
        + """
@rm.measure("infer_step", module="inference")
def infer_step(x, *, y=2):
    "One step."
    return x * y

@rm.measure
def bare():
    return "bare"

@rm.measure()
def empty_parens():
    return "ep"

class Engine:
    def __init__(self):
        self.k = 10
    @rm.measure("step", module="engine")
    def step(self, x):
        return self.k + x
    @staticmethod
    @rm.measure("static", module="engine")
    def static(x):
        return -x
    @classmethod
    @rm.measure("klass", module="engine")
    def klass(cls):
        return cls.__name__

@rm.measure("fails", module="inference")
def fails():
    raise ValueError("no")

results = [infer_step(3), infer_step(3, y=5), bare(), empty_parens()]
e = Engine()
results += [e.step(1), Engine.step(e, 2), e.static(4), Engine.static(5), e.klass(), Engine.klass()]
try:
    fails()
    raised = False
except ValueError:
    raised = True
done(results=results, raised=raised, name=infer_step.__name__, doc=infer_step.__doc__,
     sig=str(inspect.signature(infer_step)), wrapped=infer_step.__wrapped__.__name__,
     bare_name=bare.__name__, step_qualname=Engine.step.__qualname__)
"""
    )
    assert out["results"] == [6, 15, "bare", "ep", 11, 12, -4, -5, "Engine", "Engine"]
    assert out["raised"] is True
    assert out["name"] == "infer_step" and out["doc"] == "One step." and out["wrapped"] == "infer_step"
    assert out["sig"] == "(x, *, y=2)"
    assert out["step_qualname"] == "Engine.step"
    file = load(out["path"])
    want = {
        ("inference", "infer_step"): 2,
        ("__main__", "bare"): 1,
        ("__main__", "empty_parens"): 1,
        ("engine", "step"): 2,
        ("engine", "static"): 2,
        ("engine", "klass"): 2,
        ("inference", "fails"): 1,
    }
    got = {(f["module"], f["name"]): f["count"] for f in file["meta"]["function_durations_seconds_total"]}
    assert got == want
    assert len(events(file, "func_timing")) == sum(want.values())


def test_async_measure_includes_the_awaits(run_py):
    out = run_py(
        PRELUDE
        + """
@rm.measure("fetch", module="io")
async def fetch(i):
    await asyncio.sleep(0.05)
    return i

async def timed(i):
    t0 = time.perf_counter()
    r = await fetch(i)
    return r, time.perf_counter() - t0

async def main():
    t0 = time.perf_counter()
    rs = await asyncio.gather(*(timed(i) for i in range(3)))
    return rs, time.perf_counter() - t0

class Client:
    @rm.measure("get", module="io")
    async def get(self):
        await asyncio.sleep(0)
        return "ok"

rs, wall = asyncio.run(main())
ok = asyncio.run(Client().get())
done(results=[r for r, _ in rs], outer=[o for _, o in rs], wall=wall, ok=ok,
     is_coro=inspect.iscoroutinefunction(fetch), name=fetch.__name__)
"""
    )
    assert out["results"] == [0, 1, 2] and out["ok"] == "ok"
    assert out["is_coro"] is True and out["name"] == "fetch"
    # The three ran concurrently: together in about one sleep, not three.
    assert out["wall"] < 0.15 * 3
    file = load(out["path"])
    evs = events(file, "func_timing", "fetch")
    assert len(evs) == 3
    outer = max(out["outer"])
    for e in evs:
        # The sleep is inside the measured time: the awaits count.
        assert 0.05 <= e["duration_seconds"] <= outer, (e, outer)
    assert entry(file, "function", "get")["count"] == 1


def test_generators_are_timed_from_first_item_to_exhaustion(run_py):
    out = run_py(
        PRELUDE
        + """
@rm.measure("gen", module="g")
def gen(n):
    total = 0
    for i in range(n):
        got = yield i
        total += got or 0
    return total

def drive():
    g = gen(3)
    t0 = time.perf_counter()
    items = [next(g)]
    time.sleep(0.02)  # the consumer's time between items counts
    items.append(g.send(5))
    items.append(g.send(7))
    try:
        g.send(1)
    except StopIteration as stop:
        ret = stop.value
    return items, ret, time.perf_counter() - t0

@rm.measure("agen", module="g")
async def agen():
    for i in range(2):
        await asyncio.sleep(0.01)
        yield i

async def consume():
    return [i async for i in agen()]

items, ret, outer = drive()
aitems = asyncio.run(consume())
done(items=items, ret=ret, outer=outer, aitems=aitems, isgen=inspect.isgeneratorfunction(gen))
"""
    )
    assert out["items"] == [0, 1, 2] and out["ret"] == 13 and out["aitems"] == [0, 1]
    assert out["isgen"] is True
    file = load(out["path"])
    (e,) = events(file, "func_timing", "gen")
    assert 0.02 <= e["duration_seconds"] <= out["outer"]
    (a,) = events(file, "func_timing", "agen")
    assert a["duration_seconds"] >= 0.02


def test_function_timer_by_hand_and_resources(run_py):
    out = run_py(
        PRELUDE
        + """
with rm.FunctionTimer("load", module="init", resources=True) as t:
    rec = t.is_recording
    block = bytearray(64 << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    cpu0 = time.thread_time()
    x = 0
    for i in range(2_000_000):
        x += i
    cpu = time.thread_time() - cpu0
with rm.FunctionTimer("plain") as p:
    pass
done(rec=rec, cpu=cpu, repr=repr(t), module=p.module)
"""
    )
    assert out["rec"] is True and out["module"] == "__main__"
    assert out["repr"] == "FunctionTimer('load', module='init', resources=True)"
    file = load(out["path"])
    f = entry(file, "function", "load")
    r = f["resources"]
    assert r["calls"] == 1
    # The thread's CPU time covers at least the loop's (thread_time oracle).
    assert r["cpu_seconds_total"] >= out["cpu"] * 0.9
    # 64 MiB touched page by page: RSS grew by about that much.
    assert 60 <= r["rss_delta_mib_total"] <= 200, r
    assert entry(file, "function", "plain")["count"] == 1


def test_counts_and_process_samples(run_py):
    out = run_py(
        """
import json, os, time
import runmetrics as rm
rm.init_metrics(sample_interval=3600)
rm.start_run(log_dir="logs")
rm.observe_counts(grounded_rules=10, facts_count=200)
rm.observe_counts(grounded_rules=3)
rm.observe_counts({"rules.total": 7, "grounded_rules": 12})
rm.observe_counts()
errors = []
for bad in [dict(x=1.5), dict(x="3"), dict(x=None)]:
    try:
        rm.observe_counts(**bad)
    except TypeError as e:
        errors.append(str(e))
try:
    rm.observe_counts(x=1 << 70)
except OverflowError as e:
    errors.append("overflow")
try:
    rm.observe_counts({1: 2})
except TypeError as e:
    errors.append(str(e))
block = bytearray(200 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
rm.sample_process_gauges()
time.sleep(0.3)
path = os.path.abspath(rm.end_run())
print(json.dumps(dict(path=path, errors=errors)))
"""
    )
    file = load(out["path"])
    counts = {c["name"]: c for c in file["meta"]["counts"]}
    assert counts["grounded_rules"] == {"name": "grounded_rules", "last": 12, "min": 3, "max": 12, "observations": 3}
    assert counts["facts_count"]["last"] == 200 and counts["facts_count"]["observations"] == 1
    assert counts["rules.total"]["last"] == 7
    assert "x" not in counts
    assert len(out["errors"]) == 5, out["errors"]
    assert "float" in out["errors"][0]
    assert "names must be str" in out["errors"][4]
    assert len(events(file, "counts")) == 3
    samples = events(file, "process_sample")
    # The start sample, the one asked for, the end sample; none periodic.
    assert len(samples) >= 3
    assert file["meta"]["process_samples"] == len(samples)
    # 200 MiB were touched before the asked-for sample.
    assert file["meta"]["rss_max_mib"] >= 200
    assert max(s["rss_mib"] for s in samples) >= 200


def test_timer_constructor_arguments_are_checked():
    # The constructors parse their own arguments (a vectorcall, for speed):
    # each mistake is a TypeError as a Python function's would be.
    import pytest

    import runmetrics as rm

    cases = [
        (lambda: rm.PhaseTimer(), "PhaseTimer() missing required argument 'phase'"),
        (lambda: rm.PhaseTimer(1), "PhaseTimer() argument 'phase' must be str, not int"),
        (lambda: rm.PhaseTimer(None), "PhaseTimer() argument 'phase' must be str, not NoneType"),
        (lambda: rm.PhaseTimer("a", module=2), "PhaseTimer() argument 'module' must be str, not int"),
        (lambda: rm.PhaseTimer("a", "b", "c"), "PhaseTimer() takes at most 2 positional arguments (3 given)"),
        (lambda: rm.PhaseTimer("a", foo=1), "PhaseTimer() got an unexpected keyword argument 'foo'"),
        (lambda: rm.PhaseTimer("a", phase="b"), "PhaseTimer() got multiple values for argument 'phase'"),
        (lambda: rm.FunctionTimer(), "FunctionTimer() missing required argument 'name'"),
        (lambda: rm.FunctionTimer("f", "m", True, 4), "FunctionTimer() takes at most 3 positional arguments (4 given)"),
    ]
    for make, message in cases:
        with pytest.raises(TypeError) as e:
            make()
        assert str(e.value) == message
    t = rm.PhaseTimer(phase="p", module="m")
    assert (t.phase, t.module) == ("p", "m")
    assert rm.PhaseTimer("p", None).module == __name__
    f = rm.FunctionTimer("f", "m", True)
    assert repr(f) == "FunctionTimer('f', module='m', resources=True)"
    assert rm.FunctionTimer(name="g").module == __name__
    assert isinstance(t, rm.PhaseTimer) and isinstance(f, rm.FunctionTimer)


def test_measured_functions_pickle_by_name_and_wrap_any_callable():
    import functools
    import pickle

    import runmetrics as rm

    assert pickle.loads(pickle.dumps(measured_at_module_level)) is measured_at_module_level
    assert measured_at_module_level(2) == 3
    p = rm.measure(module="m")(functools.partial(int, base=2))
    assert p("101") == 5 and p.measured_name == "partial"
    assert p.measured_module == "m"


import runmetrics as _rm  # noqa: E402


@_rm.measure("module_level", module="t")
def measured_at_module_level(x):
    return x + 1


def test_max_names_pools_the_excess_and_time_one_in_samples(run_py):
    out = run_py(
        """
import json, os
import runmetrics as rm
rm.init_metrics(sample_interval=3600, max_names=3, time_one_in=8)
rm.start_run(log_dir="logs")
for name in ["a", "b", "c", "d", "e"]:
    for _ in range(1000):
        with rm.PhaseTimer(name, module="m"):
            pass
print(json.dumps(dict(path=os.path.abspath(rm.end_run()))))
"""
    )
    meta = load(out["path"])["meta"]
    phases = {(p["module"], p["phase"]): p for p in meta["phase_durations_seconds_total"]}
    # Three names kept; the other two names' 2 000 regions pooled, each counted.
    assert sorted(phases) == [("m", "a"), ("m", "b"), ("m", "c"), ("runmetrics", "(names over max_names)")]
    assert [phases["m", n]["count"] for n in "abc"] == [1000, 1000, 1000]
    assert phases["runmetrics", "(names over max_names)"]["count"] == 2000
    assert meta["names"]["max_names"] == 3 and meta["names"]["refused"] >= 2
    for n in "abc":
        sampled = phases["m", n]["sampled"]
        # Strides of 1 to 15 regions: about 1000 / 8 = 125 timed.
        assert sampled["one_in"] == 8
        assert 60 <= sampled["timed"] <= 250, sampled
