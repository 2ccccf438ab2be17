"""Threads and processes: Python threads record into their own buffers (the
counts are exact, each thread is its own `thread` in the events); workers
made by multiprocessing with fork and with spawn each start their own run and
write their own file with their own pid, and the parent's run is untouched."""

import os

from conftest import entry, events, load


def test_threads_record_every_region_each_on_its_own(run_py):
    out = run_py(
        """
import json, os, threading
import runmetrics as rm
rm.init_metrics(keep_all_events=True)
rm.start_run(log_dir="logs")

@rm.measure("work", module="threads")
def work(i):
    return i

N, K = 8, 3000
barrier = threading.Barrier(N)
def body(t):
    barrier.wait()
    for i in range(K):
        with rm.PhaseTimer("step", module="threads"):
            work(i)
        if i % 100 == 0:
            rm.observe_counts(**{f"t{t}": i})
threads = [threading.Thread(target=body, args=(t,)) for t in range(N)]
for t in threads: t.start()
for t in threads: t.join()
path = os.path.abspath(rm.end_run())
print(json.dumps(dict(path=path, n=N, k=K)))
"""
    )
    n, k = out["n"], out["k"]
    file = load(out["path"])
    meta = file["meta"]
    assert entry(file, "phase", "step")["count"] == n * k
    assert entry(file, "function", "work")["count"] == n * k
    assert meta["records_dropped"] == 0 and meta["events_omitted"] == 0
    steps = events(file, "phase_timing", "step")
    assert len(steps) == n * k
    by_thread = {}
    for e in steps:
        by_thread[e["thread"]] = by_thread.get(e["thread"], 0) + 1
    assert sorted(by_thread.values()) == [k] * n
    counts = {c["name"]: c for c in meta["counts"]}
    for t in range(n):
        assert counts[f"t{t}"]["last"] == (k - 1) // 100 * 100
        assert counts[f"t{t}"]["observations"] == len(range(0, k, 100))


WORKERS = """
import json, multiprocessing as mp, os, sys, time
import runmetrics as rm

@rm.measure("work", module="w")
def work(x):
    return x * 2

@rm.measure("task", module="w")
def task(x):
    # A measured function as the pool's target: it pickles by name.
    return work(x) + 1

def worker(args):
    log_dir, i = args
    # Timers before the worker's own run record nothing anywhere.
    with rm.PhaseTimer("child_before_run", module="w"):
        pass
    run_id = rm.start_run(log_dir=log_dir)
    for _ in range(i + 1):
        with rm.PhaseTimer("child", module="w"):
            work(i)
    path = rm.end_run(extra_meta={"worker": i})
    return dict(pid=os.getpid(), run_id=run_id, path=os.path.abspath(path))

if __name__ == "__main__":
    method = sys.argv[1]
    rm.init_metrics(job="parent_job", grouping={"env": "test"})
    parent_run = rm.start_run(log_dir="logs")
    for _ in range(10):
        with rm.PhaseTimer("before", module="p"):
            pass
    ctx = mp.get_context(method)
    # A phase open across the fork: it ends in the parent, and only there.
    with rm.PhaseTimer("across", module="p"):
        with ctx.Pool(3) as pool:
            kids = pool.map(worker, [("logs", i) for i in range(3)])
            # Outside any run of theirs, the workers' calls record nothing.
            tasks = pool.map(task, range(4))
    for _ in range(5):
        with rm.PhaseTimer("after", module="p"):
            pass
    path = os.path.abspath(rm.end_run())
    print(json.dumps(dict(path=path, pid=os.getpid(), kids=kids, parent_run=parent_run, tasks=tasks)))
"""


def check_workers(out, tmp_path, method):
    assert out["tasks"] == [1, 3, 5, 7]
    parent = load(out["path"])
    assert parent["meta"]["pid"] == out["pid"]
    assert entry(parent, "phase", "before")["count"] == 10
    assert entry(parent, "phase", "after")["count"] == 5
    assert entry(parent, "phase", "across")["count"] == 1
    assert entry(parent, "phase", "child") is None
    assert entry(parent, "function", "work") is None and entry(parent, "function", "task") is None
    assert parent["meta"]["records_outside_run"] == 0
    pids = set()
    for i, kid in enumerate(out["kids"]):
        f = load(kid["path"])
        assert f["meta"]["run_id"] == kid["run_id"]
        assert f["meta"]["pid"] == kid["pid"] != out["pid"]
        pids.add(kid["pid"])
        assert f["meta"]["worker"] == i
        assert entry(f, "phase", "child")["count"] == i + 1
        assert entry(f, "function", "work")["count"] == i + 1
        # Nothing of the parent's, nothing from before the worker's run.
        assert entry(f, "phase", "before") is None and entry(f, "phase", "across") is None
        assert entry(f, "phase", "child_before_run") is None
        if method == "fork":
            # A forked worker keeps the parent's job and labels.
            assert f["meta"]["job"] == "parent_job" and f["meta"]["grouping"] == {"env": "test"}
        else:
            assert f["meta"]["job"] == "runmetrics"
    files = sorted(p.name for p in (tmp_path / "logs").glob("*.json"))
    want = sorted([f"{out['parent_run']}.json"] + [f"{k['run_id']}.json" for k in out["kids"]])
    assert files == want


def test_fork_workers_write_their_own_files(run_py, tmp_path):
    (tmp_path / "workers.py").write_text(WORKERS)
    import subprocess, sys, json

    p = subprocess.run([sys.executable, "workers.py", "fork"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    check_workers(json.loads(p.stdout.splitlines()[-1]), tmp_path, "fork")


def test_spawn_workers_write_their_own_files(tmp_path):
    (tmp_path / "workers.py").write_text(WORKERS)
    import subprocess, sys, json

    p = subprocess.run([sys.executable, "workers.py", "spawn"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    check_workers(json.loads(p.stdout.splitlines()[-1]), tmp_path, "spawn")


def test_a_forked_child_of_a_serving_parent_runs_without_the_port(run_py):
    out = run_py(
        """
import json, os, socket, urllib.request
import runmetrics as rm
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
rm.init_metrics(port=port, job="served")
rm.start_run(log_dir="logs")
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        run_id = rm.start_run(log_dir="logs")
        with rm.PhaseTimer("in_child", module="c"):
            pass
        msg = json.dumps(dict(path=os.path.abspath(rm.end_run()), pid=os.getpid()))
    except Exception as e:
        msg = json.dumps(dict(error=repr(e)))
    os.write(w, msg.encode())
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 65536).decode())
os.waitpid(pid, 0)
with rm.PhaseTimer("in_parent", module="c"):
    pass
path = os.path.abspath(rm.end_run())
body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
print(json.dumps(dict(child=child, path=path, body=body, pid=os.getpid())))
"""
    )
    assert "error" not in out["child"], out["child"]
    child = load(out["child"]["path"])
    assert child["meta"]["pid"] == out["child"]["pid"] != out["pid"]
    assert entry(child, "phase", "in_child")["count"] == 1
    assert child["meta"]["job"] == "served"
    parent = load(out["path"])
    assert entry(parent, "phase", "in_parent")["count"] == 1
    assert entry(parent, "phase", "in_child") is None
    # The parent still serves /metrics, and only its own phases.
    assert 'runmetrics_phase_duration_seconds_count{module="c",phase="in_parent"} 1' in out["body"]
    assert "in_child" not in out["body"]
