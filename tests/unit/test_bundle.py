"""The deploy bundle (envsync.deploy.bundle), built from a temporary git repository holding a small copy
of the project's layout: reproducible bytes and digest, the manifest, what ships and what does not, and
the refusal of a dirty tree."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from envsync.deploy import bundle
from envsync.deploy.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[2]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "envsync tests",
    "GIT_AUTHOR_EMAIL": "tests@envsync.invalid",
    "GIT_COMMITTER_NAME": "envsync tests",
    "GIT_COMMITTER_EMAIL": "tests@envsync.invalid",
    "GIT_AUTHOR_DATE": "2026-11-21T02:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-11-21T02:00:00+00:00",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, env={**os.environ, **GIT_ENV}, check=True
    )
    return result.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed git repository with the project's layout: two real DAG files, the loader, a package
    file, the UI plugin, SQL, the config and the lock file, plus files that must never ship."""
    root = tmp_path / "repo"
    files = {
        "dags/prod_to_dev_sync.py": (REPO_ROOT / "dags" / "prod_to_dev_sync.py").read_bytes(),
        "dags/staging_cut.py": (REPO_ROOT / "dags" / "staging_cut.py").read_bytes(),
        bundle.LOADER_SOURCE: (REPO_ROOT / "plugins" / bundle.LOADER_SOURCE.removeprefix("plugins/")).read_bytes(),
        "plugins/envsync/__init__.py": b'"""envsync."""\n',
        "plugins/envsync/core/config.py": b"CONFIG = 1\n",
        "plugins/envsync_ui.py": b"# the UI plugin\n",
        "plugins/.airflowignore": b"envsync/\n",
        "sql/sync/clone.sql": b"select 1\n",
        "sql/seeds/sales/customers.sql": b"select 1 as customer_id\n",
        "sql/migrations/0001_add_email.sql": b"-- envsync: phase=expand\nalter table t add c string\n",
        "config/envsync.yaml": b"project: envsync-demo\n",
        "requirements.txt": b"apache-airflow==3.3.2 --hash=sha256:00\n",
        "README.md": b"# not shipped\n",
        "tests/unit/test_x.py": b"# not shipped\n",
    }
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "envsync")
    return root


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getmembers()


def test_two_builds_of_one_tree_are_byte_identical(repo: Path, tmp_path: Path) -> None:
    first = bundle.build(tmp_path / "a", repo)
    (repo / "dags" / "__pycache__").mkdir()  # byte code of a local run, git-ignored or not: never shipped
    (repo / "dags" / "__pycache__" / "prod_to_dev_sync.cpython-311.pyc").write_bytes(b"\x00junk")
    second = bundle.build(tmp_path / "b", repo)
    sha = git(repo, "rev-parse", "HEAD").strip()
    assert first.path.name == second.path.name == f"envsync-0.0.0+g{sha[:7]}.tar.gz"
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert first.digest == second.digest and len(first.digest) == 64
    raw = first.path.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00"  # gzip header: mtime 0
    assert raw[3] & 0x08 == 0  # no file name in the gzip header
    infos = members(first.path)
    names = [m.name for m in infos]
    assert names == sorted(names)
    commit_time = int(git(repo, "log", "-1", "--format=%ct").strip())
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in infos} == {(commit_time, 0, 0, "", "", 0o644)}


def test_layout_and_manifest(repo: Path, tmp_path: Path) -> None:
    built = bundle.build(tmp_path, repo, version="1.4.0")
    assert built.path.name == "envsync-1.4.0.tar.gz" and built.release == f"1.4.0-{built.digest[:12]}"
    with tarfile.open(built.path, "r:gz") as tar:
        contents = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert sorted(contents) == [
        "MANIFEST.json",
        "dags/envsync_dags.py",
        "dags/prod_to_dev_sync.py",
        "dags/staging_cut.py",
        "data/envsync/config/envsync.yaml.template",
        "data/envsync/sql/migrations/0001_add_email.sql",
        "data/envsync/sql/seeds/sales/customers.sql",
        "data/envsync/sql/sync/clone.sql",
        "plugins/.airflowignore",
        "plugins/envsync/__init__.py",
        "plugins/envsync/core/config.py",
        "plugins/envsync/deploy/loader.py",
        "plugins/envsync_ui.py",
        "requirements.txt",
    ]
    assert contents["dags/envsync_dags.py"] == (repo / bundle.LOADER_SOURCE).read_bytes()
    assert contents["data/envsync/config/envsync.yaml.template"] == b"project: envsync-demo\n"
    manifest = json.loads(contents["MANIFEST.json"])
    files = {name: data for name, data in contents.items() if name != "MANIFEST.json"}
    assert manifest["files"] == {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    assert manifest["lock"] == {
        "path": "requirements.txt",
        "sha256": hashlib.sha256(files["requirements.txt"]).hexdigest(),
    }
    lines = "".join(f"{name}\0{manifest['files'][name]}\n" for name in sorted(manifest["files"]))
    assert manifest["digest"] == hashlib.sha256(lines.encode()).hexdigest() == built.digest
    assert manifest["version"] == "1.4.0" and manifest["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert manifest["dirty"] is False
    assert manifest["dags"] == {
        "prod_to_dev_sync": ["datasets", "dry_run", "tables", "window_quarters"],
        "staging_cut": ["datasets"],
    }
    assert bundle.read(built.path).files == contents  # read() verifies every sha256 and the digest


def test_the_version_is_the_tag_on_head(repo: Path, tmp_path: Path) -> None:
    git(repo, "tag", "v2.0.1")
    assert bundle.build(tmp_path, repo).path.name == "envsync-v2.0.1.tar.gz"
    with pytest.raises(bundle.BundleError, match=r"version 'no/slash' is not allowed: 1-64 characters"):
        bundle.build(tmp_path, repo, version="no/slash")


def test_a_changed_file_changes_the_digest(repo: Path, tmp_path: Path) -> None:
    before = bundle.build(tmp_path / "a", repo, version="1")
    (repo / "sql" / "seeds" / "sales" / "customers.sql").write_bytes(b"select 2 as customer_id\n")
    git(repo, "commit", "-q", "-am", "seed change")
    after = bundle.build(tmp_path / "b", repo, version="1")
    assert after.digest != before.digest
    changed = {k for k in after.manifest["files"] if after.manifest["files"][k] != before.manifest["files"][k]}  # type: ignore[index]
    assert changed == {"data/envsync/sql/seeds/sales/customers.sql"}


def test_untracked_files_are_not_shipped(repo: Path, tmp_path: Path) -> None:
    clean = bundle.build(tmp_path / "a", repo, version="1")
    (repo / "dags" / "scratch_dag.py").write_text("# an untracked experiment\n")
    (repo / "plugins" / "envsync" / "notes.txt").write_text("junk\n")
    (repo / "sql" / "seeds" / "sales" / "__pycache__").mkdir()
    again = bundle.build(tmp_path / "b", repo, version="1")
    assert again.path.read_bytes() == clean.path.read_bytes()
    assert not {"dags/scratch_dag.py", "plugins/envsync/notes.txt"} & set(again.files)


def test_tracked_byte_code_is_not_shipped(repo: Path, tmp_path: Path) -> None:
    pyc = repo / "plugins" / "envsync" / "__pycache__" / "x.cpython-311.pyc"
    pyc.parent.mkdir()
    pyc.write_bytes(b"\x00")
    git(repo, "add", "-f", str(pyc))
    git(repo, "commit", "-q", "-m", "byte code by mistake")
    built = bundle.build(tmp_path, repo, version="1")
    assert not [name for name in built.files if "__pycache__" in name or name.endswith(".pyc")]


def test_a_dirty_tree_is_refused_unless_allowed(repo: Path, tmp_path: Path) -> None:
    (repo / "dags" / "staging_cut.py").write_text("# changed, not committed\n")
    with pytest.raises(bundle.BundleError) as refused:
        bundle.build(tmp_path / "a", repo)
    assert "uncommitted changes to tracked files (dags/staging_cut.py)" in str(refused.value)
    assert "--allow-dirty" in str(refused.value)
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").iterdir())  # nothing half-written
    built = bundle.build(tmp_path / "b", repo, allow_dirty=True)
    assert built.version.endswith("+g" + git(repo, "rev-parse", "--short=7", "HEAD").strip() + ".dirty")
    assert built.manifest["dirty"] is True
    assert built.files["dags/staging_cut.py"] == b"# changed, not committed\n"


def test_read_refuses_a_tampered_bundle(repo: Path, tmp_path: Path) -> None:
    built = bundle.build(tmp_path, repo, version="1")
    tampered = tmp_path / "t" / "envsync-1.tar.gz"
    tampered.parent.mkdir()
    with tarfile.open(built.path, "r:gz") as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "data/envsync/sql/sync/clone.sql":
                data = b"drop table prod\n"
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(bundle.BundleError, match=r"files changed since it was built .*data/envsync/sql/sync/clone.sql"):
        bundle.read(tampered)
    assert bundle.find(tmp_path / "t") == tampered
    shutil.copy(built.path, tmp_path / "t" / "envsync-2.tar.gz")
    with pytest.raises(bundle.BundleError, match="holds 2 bundles"):
        bundle.find(tmp_path / "t")


def test_the_cli_prints_the_summary(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bundle", "--out", str(tmp_path / "dist"), "--root", str(repo), "--version", "3.0.0"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    built = bundle.read(Path(summary["bundle"]))
    assert summary == {
        "bundle": str(tmp_path / "dist" / "envsync-3.0.0.tar.gz"),
        "version": "3.0.0",
        "digest": built.digest,
        "release": built.release,
        "sha256": built.sha256,
    }
    (repo / "requirements.txt").write_text("changed\n")
    assert main(["bundle", "--out", str(tmp_path / "dist2"), "--root", str(repo)]) == 1
    assert not (tmp_path / "dist2").exists() or not list((tmp_path / "dist2").iterdir())


def test_the_loader_tags_dags_with_the_smoke_tests_tag() -> None:
    from envsync.deploy import smoke

    source = (REPO_ROOT / "plugins" / bundle.LOADER_SOURCE.removeprefix("plugins/")).read_text()
    assert f'RELEASE_TAG = "{smoke.RELEASE_TAG}"' in source


def test_make_bundle_builds_the_repository_s_bundle(tmp_path: Path) -> None:
    """`make bundle` (what CI runs once per commit) builds this repository's tracked files into the
    same bytes as the builder called directly."""
    out = tmp_path / "dist"
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "bundle", f"BUNDLE_DIR={out}", "VERSION=9.9.9", "ALLOW_DIRTY=1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [built] = sorted(out.glob("envsync-*.tar.gz"))
    direct = bundle.build(tmp_path / "direct", REPO_ROOT, version="9.9.9", allow_dirty=True)
    assert built.read_bytes() == direct.path.read_bytes()
    assert "prod_to_dev_sync" in bundle.read(built).dag_ids()
