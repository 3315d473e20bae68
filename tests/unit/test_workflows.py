"""The GitHub workflows users copy (.github/workflows): valid for actionlint, and every step a make
target that the test suite itself runs, so a workflow never calls something untested."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = REPO_ROOT / ".venv" / "bin" / "actionlint"
# make targets the workflows may call -> the test that runs each (the CI entry points run themselves:
# `make test` is the suite, and runs install, check-sql and lint before it)
EXERCISED = {
    "install": "every make target below (its first prerequisite)",
    "lint": "make test (a prerequisite); tests/unit/test_lint.py plants failures in its tools",
    "check-sql": "make test (a prerequisite); tests/emulator/test_checksql.py runs it",
    "test": ".ci/run (CI itself)",
    "test-fast": "tests/unit/test_workflows.py::test_make_test_fast_runs_the_fast_tiers",
    "bundle": "tests/unit/test_bundle.py::test_make_bundle_builds_the_repository_s_bundle",
    "deploy": "tests/integration/test_deploy.py (staging, then prod with the phrase)",
    "smoke": "tests/integration/test_deploy.py (against a real Airflow)",
    "rollback": "tests/integration/test_deploy.py",
}


def make_calls() -> list[tuple[str, str]]:
    """(workflow file, make target) of every `make <target>` a workflow step runs."""
    calls = []
    for path in WORKFLOWS:
        data = yaml.safe_load(path.read_text())
        for job in data["jobs"].values():
            for step in job.get("steps", []):
                run = step.get("run")
                if run:
                    calls += [(path.name, target) for target in re.findall(r"(?:^|\s)make\s+([a-z][a-z-]*)", run)]
    return calls


def test_the_workflows_exist() -> None:
    assert [p.name for p in WORKFLOWS] == ["cd.yml", "ci.yml"]


def test_actionlint_finds_nothing() -> None:
    if not ACTIONLINT.exists():
        pytest.fail(f"actionlint is not installed at {ACTIONLINT}: run make install")
    done = subprocess.run(
        [str(ACTIONLINT), "-no-color", "-shellcheck=", "-pyflakes=", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    done = subprocess.run(
        [str(ACTIONLINT), "-no-color", str(broken)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1 and "nope" in done.stdout


def test_every_step_is_a_make_target_the_suite_exercises() -> None:
    calls = make_calls()
    assert calls, "no workflow step runs make"
    makefile = (REPO_ROOT / "Makefile").read_text()
    for workflow, target in calls:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{workflow}: make {target} is no Makefile target"
        assert target in EXERCISED, f"{workflow}: make {target} is not exercised by the test suite"
    for path in WORKFLOWS:
        data = yaml.safe_load(path.read_text())
        for name, job in data["jobs"].items():
            for step in job.get("steps", []):
                run = step.get("run")
                if run:
                    assert re.match(r"\s*make\s", run), f"{path.name}: job {name} runs {run!r}, not a make target"


def test_make_test_fast_runs_the_fast_tiers() -> None:
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-s",
            "test-fast",
            "TEST_WORKERS=0",
            "FAST_TIERS=tests/unit/test_window.py",
            "PYTEST_ARGS=-q -p no:randomly -p no:cacheprovider",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", done.stdout)
