"""The run file from Python has the Rust run file's layout: the same golden
file (tests/golden/run_file_shape.json) as tests/run_file.rs, and the seed's
own example, its import line changed, writes that layout."""

import json
import os
import pathlib
import subprocess
import sys

from conftest import REPO, entry, events, golden, load, shape

SEED_META_KEYS = [
    "run_id",
    "started_at",
    "ended_at",
    "cpu_percent_max",
    "cpu_percent_mean",
    "rss_max_mib",
    "phase_durations_seconds_total",
    "all_phases_duration_seconds_total",
    "function_durations_seconds_total",
    "all_functions_duration_seconds_total",
]


def without_resources(v):
    """The golden shape minus what only `resources=True` adds: the function
    entry and func_timing event that carry resource figures."""
    if isinstance(v, dict):
        return {k: without_resources(x) for k, x in v.items()}
    if isinstance(v, list):
        return [
            without_resources(x)
            for x in v
            if not (isinstance(x, dict) and ("resources" in x or "cpu_seconds" in x))
        ]
    return v


def python_threads(file_shape):
    """Python's threads were not started by Rust, which knows no name for
    them: `meta.threads[].name` is null where the Rust test's named threads
    have a string. The layout allows both (the key is always there)."""
    for t in file_shape["meta"]["threads"]:
        if t.get("name") == "null":
            t["name"] = "string"
    return file_shape


def test_everything_a_run_can_hold_matches_the_golden_layout(run_py):
    # The same calls as full_run in tests/run_file.rs, from Python.
    out = run_py(
        """
        import json, os
        import runmetrics as rm
        rm.init_metrics(job="al_inference", grouping={"env": "dev"})
        rm.start_run(log_dir="logs")
        with rm.PhaseTimer("grounding", module="pipeline"):
            with rm.PhaseTimer("execute", module="pipeline"):
                pass

        @rm.measure("main_infer", module="inference")
        def main_infer():
            return 1

        @rm.measure("load_model", module="init", resources=True)
        def load_model():
            pass

        main_infer()
        load_model()
        rm.observe_counts(facts_count=200, grounded_rules=10)
        rm.sample_process_gauges()
        path = rm.end_run(extra_meta={"facts_final": 150, "rules_total": 200})
        print(json.dumps({"path": os.path.abspath(path)}))
        """
    )
    file = load(out["path"])
    assert python_threads(shape(file)) == golden()


def test_the_seeds_example_runs_and_writes_the_seed_layout(tmp_path):
    example = REPO / "python" / "examples" / "seed_example.py"
    text = example.read_text()
    # Only the import lines name the package: none still says `metrics`.
    assert "from metrics" not in text and "import metrics" not in text
    assert text.count("from runmetrics import") == 5
    p = subprocess.run(
        [sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    files = list((tmp_path / "metrics_logs").glob("*.json"))
    assert len(files) == 1, files
    file = load(files[0])
    run_id = file["meta"]["run_id"]
    assert files[0].name == f"{run_id}.json"
    assert p.stdout.strip() == f"run {run_id}: {os.path.join('metrics_logs', run_id + '.json')}"

    # The same layout checks as the Rust file's: the golden shape, less the
    # parts only resources=True writes (the example does not ask for them).
    assert python_threads(shape(file)) == without_resources(golden())
    keys = list(file["meta"])
    assert keys[: len(SEED_META_KEYS)] == SEED_META_KEYS
    assert keys[-2:] == ["facts_final", "rules_total"]
    assert file["meta"]["facts_final"] == 100 and file["meta"]["rules_total"] == 50

    # And what the example did, against the example itself.
    g = entry(file, "phase", "grounding")
    assert g["module"] == "pipeline" and g["count"] == 1
    assert 0.02 <= g["duration_seconds_total"] < 5
    f = entry(file, "function", "infer_step")
    assert f["module"] == "inference" and f["count"] == 3
    assert len(events(file, "func_timing", "infer_step")) == 3
    counts = {c["name"]: c for c in file["meta"]["counts"]}
    assert counts["grounded_rules"]["last"] == 10 and counts["facts_count"]["last"] == 200
    assert file["meta"]["job"] == "al_inference"
    assert file["meta"]["grouping"] == {"env": "dev"}
    assert file["meta"]["pid"] != os.getpid()
    assert file["meta"]["records_dropped"] == 0


def test_the_readme_python_example_runs(run_py):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("\n## Python\n") :]
    code = section[section.index("```python\n") + len("```python\n") :]
    code = code[: code.index("```")]
    out = run_py(
        "import json, os\n"
        "def do_grounding():\n    pass\n"
        + code
        + "print(json.dumps(dict(path=os.path.abspath(path), run_id=run_id)))\n"
    )
    file = load(out["path"])
    assert file["meta"]["run_id"] == out["run_id"]
    assert entry(file, "phase", "grounding")["count"] == 1
    assert entry(file, "function", "infer_step")["count"] == 1
    assert file["meta"]["facts_final"] == 100
