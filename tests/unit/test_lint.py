"""`make lint` catches what it is there for: a planted import circle, formatting error and type error
each make its tool fail, on a copy of the tree (the same tools and pyproject.toml as `make lint`).

Also the layout itself: no module left beside plugins/envsync/__init__.py, and no import circle among
envsync's modules (TYPE_CHECKING imports included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The parts of the repository `make lint` reads, copied so that they can be broken."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO_ROOT / "plugins", root / "plugins", ignore=ignore)
    shutil.copytree(REPO_ROOT / "dags", root / "dags", ignore=ignore)
    return root


def run(tree: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "plugins")}
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return run(tree, str(BIN / "lint-imports"), "--no-cache", "--no-logo")


def ruff_format_check(tree: Path) -> subprocess.CompletedProcess[str]:
    return run(tree, str(BIN / "ruff"), "format", "--check", "--no-cache", "plugins", "dags")


def mypy(tree: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return run(tree, str(BIN / "mypy"), "--cache-dir", os.devnull, *files)


def plant(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_a_planted_import_circle_breaks_the_contracts(tree: Path) -> None:
    clean = lint_imports(tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # identifiers is core's leaf; importing the guard (which imports identifiers) closes a circle
    plant(tree / "plugins/envsync/core/identifiers.py", "\nfrom envsync.core.guard import TableRef  # noqa: E402\n")
    broken = lint_imports(tree)
    assert broken.returncode != 0
    assert "no import circle between the modules of a package BROKEN" in broken.stdout
    assert "- .identifiers -> .guard (1 import)" in broken.stdout


def test_a_planted_layer_violation_breaks_the_contracts(tree: Path) -> None:
    # core imports nothing above it: the config reaching into the backups capability is refused
    plant(tree / "plugins/envsync/core/window.py", "\nfrom envsync.backups.ladder import keep  # noqa: E402\n")
    broken = lint_imports(tree)
    assert broken.returncode != 0
    assert "BROKEN" in broken.stdout and "envsync.core.window -> envsync.backups.ladder" in broken.stdout


def test_a_planted_formatting_error_fails_ruff_format_check(tree: Path) -> None:
    clean = ruff_format_check(tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    plant(tree / "plugins/envsync/core/window.py", "\n\nPLANTED = {  'a':1 ,'b' :2}\n")
    broken = ruff_format_check(tree)
    assert broken.returncode != 0
    assert "plugins/envsync/core/window.py" in broken.stdout


def test_a_planted_type_error_fails_mypy(tree: Path) -> None:
    target = "plugins/envsync/core/identifiers.py"
    clean = mypy(tree, target)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    plant(tree / target, '\n\ndef planted() -> int:\n    return "not a number"\n')
    broken = mypy(tree, target)
    assert broken.returncode != 0
    assert "identifiers.py" in broken.stdout and "[return-value]" in broken.stdout


# ------------------------------------------------------------------------------------ the layout


def test_no_module_is_left_beside_the_package_init() -> None:
    loose = sorted(p.name for p in (REPO_ROOT / "plugins/envsync").glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"put these in a capability folder (README: Layout and tests): {loose}"


def test_no_import_circle_among_envsync_modules() -> None:
    import grimp

    sys.path.insert(0, str(REPO_ROOT / "plugins"))
    graph = grimp.build_graph("envsync", cache_dir=None)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules) for m in modules}
    # Tarjan's strongly connected components: any component of two or more modules is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    assert circles == []
