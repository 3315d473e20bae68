"""Under CI (CI=true) a skipped test fails the run unless it is listed, with its reason, in
tests/skips_allowed_in_ci.txt: on a CI machine every test must run (.ci/run provisions what the suite
needs). Used by tests/conftest.py; a module of its own so tests can import it (every conftest.py is a
module named `conftest`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SKIP_ALLOWLIST = Path(__file__).resolve().parent / "skips_allowed_in_ci.txt"


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def allowed_skips(path: Path = SKIP_ALLOWLIST) -> dict[str, str]:
    """{test id: reason} from the allowlist: one `<test id> | <reason>` a line; `#` starts a comment.
    A test id also allows its parametrized cases. A line without a reason is an error."""
    allowed: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines() if path.exists() else [], start=1):
        line = raw.split("#", 1)[0].strip() if raw.lstrip().startswith("#") else raw.strip()
        if not line:
            continue
        test, _, reason = (part.strip() for part in line.partition("|"))
        if not test or not reason:
            raise pytest.UsageError(f"{path.name}:{number}: write `<test id> | <reason>`, got {raw!r}")
        allowed[test] = reason
    return allowed


def unlisted_skips(skipped: dict[str, str], allowed: dict[str, str]) -> dict[str, str]:
    return {
        test: reason
        for test, reason in skipped.items()
        if not any(test == a or test.startswith(a + "[") for a in allowed)
    }
