"""Helpers for the runmetrics Python tests.

Most tests run their scenario in a fresh interpreter (`run_py`): the module
keeps one recorder per process and `init_metrics` may be called once, as in
the seed, so each scenario gets a process of its own. The scenario prints one
JSON line, which `run_py` returns.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "run_file_shape.json"


def shape(v):
    """The shape of a JSON value, as tests/run_file.rs computes it: objects
    keep their keys in order, arrays list the distinct shapes of their
    elements, leaves show their type, and an "event" key keeps its value."""
    if isinstance(v, dict):
        return {k: (x if k == "event" else shape(x)) for k, x in v.items()}
    if isinstance(v, list):
        out = []
        for s in map(shape, v):
            if s not in out:
                out.append(s)
        return out
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    raise AssertionError(f"not JSON: {v!r}")


def golden():
    return json.loads(GOLDEN.read_text())


@pytest.fixture
def run_py(tmp_path):
    """Runs `code` (dedented) in a new interpreter in `tmp_path`; returns the
    JSON its last stdout line holds. Fails with the child's stderr."""

    def run(code, *, expect_ok=True, timeout=120, env=None):
        script = tmp_path / "scenario.py"
        script.write_text(textwrap.dedent(code))
        full_env = dict(os.environ)
        full_env.update(env or {})
        p = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )
        if expect_ok:
            assert p.returncode == 0, f"scenario failed ({p.returncode}):\n{p.stderr}"
            lines = [l for l in p.stdout.splitlines() if l.strip()]
            assert lines, f"scenario printed nothing; stderr:\n{p.stderr}"
            return json.loads(lines[-1])
        return p

    return run


def load(path):
    with open(path) as f:
        return json.load(f)


def entry(file, kind, name):
    """The meta entry of phase or function `name` (None if absent)."""
    key = {"phase": "phase_durations_seconds_total", "function": "function_durations_seconds_total"}[kind]
    field = "phase" if kind == "phase" else "name"
    found = [e for e in file["meta"][key] if e[field] == name]
    assert len(found) <= 1, found
    return found[0] if found else None


def events(file, kind, name=None):
    field = {"phase_timing": "phase", "func_timing": "name"}.get(kind)
    return [
        e
        for e in file["events"]
        if e["event"] == kind and (name is None or e[field] == name)
    ]
