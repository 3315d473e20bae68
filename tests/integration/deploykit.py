"""Test kit of the deploy tests: a committed copy of this project to bundle, a Composer-like sync of a
bucket to local folders, and the helpers that read a bucket back.

`project_repo(dest)` copies the project's shipped files (tracked or new, not ignored: their working
copies) into a fresh git repository and commits them, so a bundle of "this project" can be built even
while the checkout has uncommitted changes. `sync_like_composer(bucket, root)` mirrors gs://B/dags,
gs://B/plugins and gs://B/data to <root>/dags, <root>/plugins and <root>/data, as Cloud Composer's
one-way sync does (files missing from the bucket are removed locally).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E = REPO_ROOT / "tests" / "e2e"
if str(E2E) not in sys.path:
    sys.path.append(str(E2E))  # cluster.py: the real Airflow cluster of the end-to-end tests

GIT_ENV = {
    "GIT_AUTHOR_NAME": "envsync tests",
    "GIT_AUTHOR_EMAIL": "tests@envsync.invalid",
    "GIT_COMMITTER_NAME": "envsync tests",
    "GIT_COMMITTER_EMAIL": "tests@envsync.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
SHIPPED = ("dags/", "plugins/", "sql/", "config/envsync.yaml", "requirements.txt")


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, env={**os.environ, **GIT_ENV}, check=True
    ).stdout


def project_repo(dest: Path) -> Path:
    """A one-commit git repository holding the project's shipped files as they are in this checkout
    (tracked files and new files git does not ignore, i.e. what the next commit would hold)."""
    files = git(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for path in sorted(set(files)):
        source = REPO_ROOT / path
        if not path.startswith(SHIPPED) or not source.is_file() or "__pycache__" in path:
            continue
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest / path)
    git(dest, "init", "-q", "-b", "main")
    commit(dest, "envsync")
    return dest


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)


def sync_like_composer(client: Any, bucket: str, root: Path) -> int:
    """Mirror gs://<bucket>/{dags,plugins,data} to <root>/...; returns the number of files written."""
    wanted: dict[Path, Any] = {}
    for blob in client.list_blobs(bucket):
        if blob.name.split("/", 1)[0] in ("dags", "plugins", "data") and not blob.name.endswith("/"):
            wanted[root / blob.name] = blob
    written = 0
    for path, blob in sorted(wanted.items()):
        data = blob.download_as_bytes()
        if path.is_file() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.sync")
        temp.write_bytes(data)
        temp.replace(path)
        written += 1
    for folder in ("dags", "plugins", "data"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for path in (root / folder).rglob("*"):
            if path.is_file() and path not in wanted:
                path.unlink()
    return written


def objects(client: Any, bucket: str, prefix: str = "") -> dict[str, str]:
    """Object name -> sha256 of its bytes."""
    return {
        blob.name: hashlib.sha256(blob.download_as_bytes()).hexdigest()
        for blob in client.list_blobs(bucket, prefix=prefix or None)
    }
