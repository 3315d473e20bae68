"""Under CI (CI=true) a skipped test fails the run unless tests/skips_allowed_in_ci.txt lists it with
its reason (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ciskips import SKIP_ALLOWLIST, allowed_skips, unlisted_skips


def test_the_allowlist_is_empty_today_and_parses() -> None:
    assert SKIP_ALLOWLIST.exists()
    assert allowed_skips() == {}


def test_listed_tests_and_their_parametrized_cases_may_skip_others_may_not(tmp_path: Path) -> None:
    listed = tmp_path / "allow.txt"
    listed.write_text("# why each may skip\ntests/e2e/test_x.py::test_page | needs a GPU\n\n")
    allowed = allowed_skips(listed)
    assert allowed == {"tests/e2e/test_x.py::test_page": "needs a GPU"}
    skipped = {
        "tests/e2e/test_x.py::test_page[chromium]": "no GPU",
        "tests/e2e/test_x.py::test_page_two": "no chromium",
        "tests/unit/test_y.py::test_z": "no docker",
    }
    assert unlisted_skips(skipped, allowed) == {
        "tests/e2e/test_x.py::test_page_two": "no chromium",
        "tests/unit/test_y.py::test_z": "no docker",
    }


def test_a_line_without_a_reason_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "allow.txt"
    listed.write_text("tests/e2e/test_x.py::test_page\n")
    with pytest.raises(pytest.UsageError, match=r"allow.txt:1: write `<test id> \| <reason>`"):
        allowed_skips(listed)


@pytest.mark.parametrize(("ci", "code"), [("true", 1), ("", 0)])
def test_a_skip_fails_a_ci_run_and_only_a_ci_run(tmp_path: Path, ci: str, code: int) -> None:
    probe = SKIP_ALLOWLIST.parent / "unit" / f"test_zz_skip_probe_{ci or 'local'}.py"
    probe.write_text("import pytest\n\n\ndef test_needs_something():\n    pytest.skip('something is missing')\n")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
            cwd=SKIP_ALLOWLIST.parent.parent,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}, "CI": ci},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        probe.unlink()
    assert done.returncode == code, done.stdout[-2000:]
    assert "something is missing" in done.stdout  # every skip is shown with its reason
    assert ("not in tests/skips_allowed_in_ci.txt" in done.stdout) == bool(ci)
