"""Each bad input raises a Python exception whose message is the Rust
error's (the strings below are src/error.rs's formats), with `kind` naming
the variant; and nothing recorded is lost: the run stays open, and the file
finally written holds every region recorded before, between and after."""

from conftest import entry, load

NO_OPEN_RUN = "no run is open; call start_run first"


def test_end_run_refusals_leave_the_run_open_and_lose_nothing(run_py):
    out = run_py(
        """
import json, os
import runmetrics as rm
rm.start_run(log_dir="logs")
errors = []
def attempt(**kw):
    with rm.PhaseTimer("between", module="e"):
        pass
    try:
        rm.end_run(**kw)
        errors.append(None)
    except Exception as e:
        errors.append([type(e).__name__, getattr(e, "kind", None), str(e), rm.is_run_open()])
deep = cur = []
for _ in range(80):
    cur.append([]); cur = cur[0]
loop = {}
loop["self"] = loop
attempt(extra_meta=[1, 2])
attempt(extra_meta="text")
attempt(extra_meta=5)
attempt(extra_meta={1, 2})
attempt(extra_meta={"run_id": "mine"})
attempt(extra_meta={"deep": deep})
attempt(extra_meta=loop)
attempt(extra_meta={"s": {1}})
attempt(extra_meta={"n": float("nan")})
attempt(extra_meta={"big": 1 << 80})
attempt(extra_meta={"k": {3: "x"}})
path = os.path.abspath(rm.end_run(extra_meta={"facts_final": 1, "nested": {"a": [1, 2.5, None, True]}}))
try:
    rm.end_run()
except rm.EndRunError as e:
    errors.append([type(e).__name__, e.kind, str(e), rm.is_run_open()])
print(json.dumps(dict(path=path, errors=errors)))
"""
    )
    errs = out["errors"]
    not_object = 'extra_meta must be a JSON object like json!({"facts_final": 100}) or null, got '
    assert errs[0] == ["EndRunError", "ExtraMetaNotObject", not_object + "an array", True]
    assert errs[1] == ["EndRunError", "ExtraMetaNotObject", not_object + "a string", True]
    assert errs[2] == ["EndRunError", "ExtraMetaNotObject", not_object + "a number", True]
    assert errs[3][:2] == ["TypeError", None] and "set" in errs[3][2] and errs[3][3]
    assert errs[4] == [
        "EndRunError",
        "ReservedKey",
        'extra_meta key "run_id" is reserved by runmetrics (it writes that key itself); rename it',
        True,
    ]
    for e in errs[5], errs[6]:
        assert e[:2] == ["EndRunError", "ExtraMetaTooDeep"] and e[3]
        assert e[2].startswith("extra_meta nests arrays and objects more than 64 levels deep"), e
    assert errs[7][0] == "TypeError" and "extra_meta[\"s\"] is a set" in errs[7][2]
    assert errs[8][0] == "ValueError" and "NaN" in errs[8][2]
    assert errs[9][0] == "OverflowError"
    assert errs[10][0] == "TypeError" and "JSON keys are str" in errs[10][2]
    assert errs[11] == ["EndRunError", "NoOpenRun", NO_OPEN_RUN, False]
    file = load(out["path"])
    # Every attempt's phase is in the one file that was written.
    assert entry(file, "phase", "between")["count"] == 11
    assert file["meta"]["facts_final"] == 1
    assert file["meta"]["nested"] == {"a": [1, 2.5, None, True]}


def test_start_run_and_flush_errors(run_py, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    out = run_py(
        f"""
import json, os
import runmetrics as rm
errors = []
def attempt(f, *a, **kw):
    try:
        f(*a, **kw)
        errors.append(None)
    except rm.RunmetricsError as e:
        errors.append([type(e).__name__, e.kind, str(e)])
attempt(rm.end_run)
attempt(rm.flush)
attempt(rm.start_run, log_dir={str(a_file / "logs")!r})
# Root ignores permission bits; /proc refuses new files even to root.
attempt(rm.start_run, log_dir="/proc")
run_id = rm.start_run(log_dir="logs")
attempt(rm.start_run, log_dir="logs")
snap = rm.flush()
# The log_dir replaced by a file: the write fails, the run stays open.
os.rename("logs", "logs.moved")
open("logs", "w").close()
with rm.PhaseTimer("kept", module="e"):
    pass
attempt(rm.end_run)
attempt(rm.flush)
open_after = rm.is_run_open()
os.remove("logs")
os.rename("logs.moved", "logs")
path = os.path.abspath(rm.end_run())
try:
    rm.start_run(log_dir=5)
except TypeError as e:
    errors.append(["TypeError", None, str(e)])
print(json.dumps(dict(path=path, run_id=run_id, snap=os.path.abspath(snap), errors=errors, open_after=open_after)))
"""
    )
    e = out["errors"]
    assert e[0] == ["EndRunError", "NoOpenRun", NO_OPEN_RUN]
    assert e[1] == ["FlushError", "NoOpenRun", NO_OPEN_RUN]
    assert e[2][:2] == ["StartRunError", "CreateLogDir"]
    assert e[2][2].startswith(f"could not create log_dir {a_file / 'logs'}: ")
    assert e[2][2].endswith("; choose a directory you can write to")
    assert e[3][:2] == ["StartRunError", "LogDirNotWritable"]
    assert e[3][2].startswith("log_dir /proc is not writable: ")
    assert e[4] == [
        "StartRunError",
        "RunAlreadyOpen",
        f"run {out['run_id']} is still open; call end_run before starting another",
    ]
    assert e[5][:2] == ["EndRunError", "WriteRunFile"]
    assert "the run is still open, fix the cause and call end_run again" in e[5][2]
    assert e[6][:2] == ["FlushError", "WriteRunFile"]
    assert e[7][0] == "TypeError"
    assert out["open_after"] is True
    assert out["snap"] == out["path"]
    file = load(out["path"])
    assert entry(file, "phase", "kept")["count"] == 1
    assert file["meta"]["write_failures"] == 2
    assert isinstance(file["meta"]["last_write_error"], str) and file["meta"]["last_write_error"]


def test_init_metrics_errors(run_py):
    out = run_py(
        """
import json, socket
import runmetrics as rm
errors = []
def attempt(**kw):
    try:
        rm.init_metrics(**kw)
        errors.append(None)
    except (rm.RunmetricsError, ValueError, TypeError, OverflowError) as e:
        errors.append([type(e).__name__, getattr(e, "kind", None), str(e)])
attempt(grouping={"job": "x"})
attempt(job="")
attempt(pushgateway="ftp://gateway")
attempt(port=70000)
attempt(overflow="sometimes")
attempt(buffer_records=100)
taken = socket.socket()
taken.bind(("127.0.0.1", 0))
taken.listen()
attempt(port=taken.getsockname()[1])
attempt(job="ok", grouping={"env": "dev"})
attempt(job="again")
print(json.dumps(dict(errors=errors, port=taken.getsockname()[1])))
"""
    )
    e = out["errors"]
    assert e[0][:2] == ["InitMetricsError", "Config"]
    assert e[0][2].startswith('invalid runmetrics config: grouping key "job" is not a Prometheus label name')
    assert e[1] == ["InitMetricsError", "Config", "invalid runmetrics config: job must not be empty; Prometheus needs a job label"]
    assert e[2][:2] == ["InitMetricsError", "Recorder"] and e[2][2].startswith("pushgateway: gateway URL ftp://gateway cannot be used")
    assert e[3][0] == "OverflowError"
    assert e[4][0] == "ValueError"
    assert e[5][:2] == ["InitMetricsError", "Config"] and "buffer_records must be a power of two" in e[5][2]
    assert e[6][:2] == ["InitMetricsError", "Recorder"]
    assert e[6][2].startswith(f"could not serve metrics on 127.0.0.1:{out['port']}: ")
    assert e[7] is None
    assert e[8] == [
        "InitMetricsError",
        "AlreadyInitialized",
        "runmetrics is already initialised (by an earlier init_metrics call); call init_metrics once, before the first start_run",
    ]


def test_init_after_the_first_start_run_is_refused(run_py):
    out = run_py(
        """
import json
import runmetrics as rm
rm.start_run(log_dir="logs")
rm.end_run()
try:
    rm.init_metrics(job="late")
except rm.InitMetricsError as e:
    print(json.dumps([e.kind, str(e), isinstance(e, rm.RunmetricsError)]))
"""
    )
    assert out == [
        "AlreadyInitialized",
        "runmetrics is already initialised (with the defaults, by the first start_run); call init_metrics once, before the first start_run",
        True,
    ]
