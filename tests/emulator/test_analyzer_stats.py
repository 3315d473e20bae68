"""The analyzer's counter file holds the same JSON as before, written without re-encoding every hash item by item,
and a restarted emulator goes on from the counts it holds.

``BQFIDELITY_STATS`` (emulators/bqfidelity/analyzer.py) is rewritten after every statement and its
``distinct`` list grows with every new statement of a run; the test run's summary reads it back
(tests/conftest.py ``analyzer_totals``). Runs in the emulator's own Python.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

_CHECK = textwrap.dedent(
    """
    import json, os, sys, tempfile
    from pathlib import Path
    from bqfidelity import analyzer
    path = Path(tempfile.mkdtemp()) / "analyzer.json"
    stats = analyzer.Stats(path)
    stats.record("select 2", "accepted", 0.02, "QUERY", parts={"lookup": 0.01}, cpu_seconds=0.01)
    stats.record("select 1", "refused", 0.01, message="Unrecognized name: x")
    stats.record("select 2", "accepted", 0.02, "QUERY")
    stats.record("select * from t", "not_found")
    stats.record("call ds.p()", "routine_call")
    for i in range(3000):
        stats.record(f"select {i} as n", "accepted", 0.001, "QUERY")
    written = json.loads(path.read_text())
    before = json.loads(json.dumps({**stats.as_dict(), "distinct": sorted(stats.distinct)}, indent=1))
    assert written == before, "the file differs from the previous encoding"
    assert written["distinct"] == sorted(written["distinct"]) and len(written["distinct"]) == 3002
    assert written["accepted"] == 3002 and written["refused"] == 1 and written["not_found"] == 1
    again = analyzer.Stats(path)  # the emulator restarted (its virtual clock moved): it goes on counting
    again.record("select 3001 as n", "accepted", 0.001, "QUERY")
    resumed = json.loads(path.read_text())
    assert resumed["accepted"] == 3003 and resumed["refused"] == 1 and resumed["not_found"] == 1
    assert resumed["passed"] == {"routine_call": 1} and resumed["kinds"] == {"QUERY": 3003}
    assert len(resumed["distinct"]) == 3003 and resumed["refusals"] == written["refusals"]
    assert abs(resumed["totals"]["seconds"] - written["totals"]["seconds"] - 0.001) < 1e-9
    assert resumed["totals"]["step_seconds"] == {"lookup": 0.01}
    print("same")
    """
)


def test_counter_file_reads_back_as_the_indented_encoding_did(tmp_path: Path) -> None:
    python = REPO / ".venv-emulators" / "bin" / "python"
    if not python.exists():
        pytest.skip("needs .venv-emulators")
    env = {**os.environ, "PYTHONPATH": str(REPO / "emulators")}
    for key in ("VIRTUAL_ENV", "PYTHONHOME", "BQFIDELITY_STATS"):
        env.pop(key, None)
    done = subprocess.run(
        [str(python), "-c", _CHECK], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "same" in done.stdout, done.stdout + done.stderr[-3000:]
