"""init_metrics' sinks from Python: /metrics on `port`, a Pushgateway push at
end_run (to a stand-in gateway in this test, which records what it got);
flush snapshots; and the run a program leaves open when it exits."""

import http.server
import json
import threading

from conftest import entry, load


def test_metrics_are_served_on_the_port(run_py):
    out = run_py(
        """
import json, socket, urllib.request
import runmetrics as rm
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
rm.init_metrics(port=port, job="al_inference", grouping={"env": "dev"})
rm.start_run(log_dir="logs")
for _ in range(3):
    with rm.PhaseTimer("grounding", module="pipeline"):
        pass
rm.observe_counts(facts_count=200)
rm.end_run()
body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
print(json.dumps(dict(body=body)))
"""
    )
    body = out["body"]
    assert 'runmetrics_phase_duration_seconds_count{module="pipeline",phase="grounding"} 3' in body
    assert 'runmetrics_count_value{name="facts_count"} 200' in body
    assert "runmetrics_runs_completed_total 1" in body


class Gateway(http.server.BaseHTTPRequestHandler):
    got = []

    def do_PUT(self):
        n = int(self.headers.get("Content-Length", 0))
        Gateway.got.append((self.command, self.path, self.rfile.read(n).decode()))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *a):
        pass


def test_end_run_pushes_to_the_pushgateway(run_py):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        out = run_py(
            f"""
import json, os
import runmetrics as rm
rm.init_metrics(job="al_inference", grouping={{"env": "dev"}}, pushgateway={url!r})
rm.start_run(log_dir="logs")
with rm.PhaseTimer("grounding", module="pipeline"):
    pass
print(json.dumps(dict(path=os.path.abspath(rm.end_run()))))
"""
        )
    finally:
        server.shutdown()
    assert load(out["path"])["meta"]["job"] == "al_inference"
    assert len(Gateway.got) == 1, Gateway.got
    method, path, body = Gateway.got[0]
    assert method == "PUT"
    assert path == "/metrics/job/al_inference/env/dev"
    assert 'runmetrics_phase_duration_seconds_count{module="pipeline",phase="grounding"} 1' in body


def test_a_failed_push_still_writes_the_file(run_py):
    out = run_py(
        """
import json, os, socket
import runmetrics as rm
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
rm.init_metrics(job="j", pushgateway=f"http://127.0.0.1:{port}")
run_id = rm.start_run(log_dir="logs")
try:
    rm.end_run()
    err = None
except rm.EndRunError as e:
    err = [e.kind, str(e)]
print(json.dumps(dict(err=err, run_id=run_id, open=rm.is_run_open())))
"""
    )
    assert out["err"][0] == "Push"
    assert out["err"][1].startswith(f"run file logs/{out['run_id']}.json is written, but the push failed: ")
    assert out["open"] is False


def test_flush_writes_a_snapshot_and_exit_ends_the_open_run(run_py, tmp_path):
    out = run_py(
        """
import json, os
import runmetrics as rm
rm.start_run(log_dir="logs")
with rm.PhaseTimer("one", module="s"):
    pass
snap = json.load(open(rm.flush()))
with rm.PhaseTimer("two", module="s"):
    pass
print(json.dumps(dict(in_progress=snap["meta"]["in_progress"], ended=snap["meta"]["ended_at"],
                      phases=[p["phase"] for p in snap["meta"]["phase_durations_seconds_total"]])))
# No end_run: the interpreter's exit ends the run.
"""
    )
    assert out == {"in_progress": True, "ended": None, "phases": ["one"]}
    (path,) = (tmp_path / "logs").glob("*.json")
    file = load(path)
    assert file["meta"]["in_progress"] is False and file["meta"]["ended_at"]
    assert entry(file, "phase", "one")["count"] == 1
    assert entry(file, "phase", "two")["count"] == 1
