"""Build, read and verify envsync's one deployable artifact, `envsync-<version>.tar.gz`.

The bundle holds the git-tracked files of the tree (`git ls-files`: untracked files never ship), laid
out as Cloud Composer's bucket expects them:

    dags/<dag>.py                         the DAG files, and dags/envsync_dags.py (the stable loader the
                                          live dags/ folder holds: envsync/deploy/loader.py)
    plugins/envsync/...                   the package; plugins/envsync_ui.py, plugins/.airflowignore
    data/envsync/sql/...                  SQL templates, seeds (sql/seeds), migrations (sql/migrations)
    data/envsync/config/envsync.yaml.template   config/envsync.yaml, the template of an environment's config
    requirements.txt                      the hashed lock file
    MANIFEST.json                         version, commit, every file's sha256, the lock file's sha256,
                                          and `digest`: sha256 over the sorted "<path>\\0<sha256>\\n" lines

Reproducible: the same tree gives the same bytes (entries sorted, mtime = the commit's time, uid/gid 0,
no owner names, mode 0644, gzip header without name and with mtime 0, no __pycache__ or .pyc). The
digest is the content's identity (the version is not part of it); deploys and promotions go by it.
"""

from __future__ import annotations

import ast
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

NAME = "envsync"
MANIFEST = "MANIFEST.json"
LOCK_FILE = "requirements.txt"
LOADER_SOURCE = "plugins/envsync/deploy/loader.py"
LOADER = "dags/envsync_dags.py"
CONFIG_TEMPLATE = "data/envsync/config/envsync.yaml.template"
# a version is one path segment of the bucket and a word of the prod confirmation phrase
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
FILE_MODE = 0o644
# tracked file (repository path) -> its place in the bundle; the first matching rule wins
LAYOUT: tuple[tuple[str, str], ...] = (
    ("dags/", "dags/"),
    ("plugins/envsync/", "plugins/envsync/"),
    ("plugins/envsync_ui.py", "plugins/envsync_ui.py"),
    ("plugins/.airflowignore", "plugins/.airflowignore"),
    ("sql/", "data/envsync/sql/"),
    ("config/envsync.yaml", CONFIG_TEMPLATE),
    (LOCK_FILE, LOCK_FILE),
)


class BundleError(RuntimeError):
    """The bundle cannot be built, or a bundle file is not a sound envsync bundle (the message says why)."""


@dataclass(frozen=True)
class Bundle:
    """A built or read bundle: where it is, its manifest, and its file contents (bundle path -> bytes)."""

    path: Path
    manifest: dict[str, object]
    files: Mapping[str, bytes]
    sha256: str  # of the .tar.gz itself

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    @property
    def release(self) -> str:
        """The release's name in a bucket: <version>-<first 12 hex digits of the digest>."""
        return release_name(self.version, self.digest)

    def dag_ids(self) -> list[str]:
        """The release's DAG ids: the stems of its DAG files (dag_id = file stem), without the loader."""
        return dag_ids(self.files)


def release_name(version: str, digest: str) -> str:
    return f"{version}-{digest[:12]}"


def dag_ids(paths: Iterable[str]) -> list[str]:
    return sorted(
        PurePosixPath(p).stem
        for p in paths
        if p.startswith("dags/") and p.endswith(".py") and p.count("/") == 1 and p != LOADER
    )


def dag_params(source: bytes) -> list[str] | None:
    """The param names a DAG file gives its DAG (`DAG(params={...})` or `@dag(params={...})` with literal
    string keys), read without importing it; None when they are not literal."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name not in ("DAG", "dag"):
            continue
        for keyword in node.keywords:
            if keyword.arg == "params":
                value = keyword.value
                if isinstance(value, ast.Dict) and all(
                    isinstance(k, ast.Constant) and isinstance(k.value, str) for k in value.keys
                ):
                    return sorted(str(k.value) for k in value.keys if isinstance(k, ast.Constant))
                return None
        return []
    return None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_digest(files: Mapping[str, str]) -> str:
    """The bundle's digest: sha256 over the sorted "<path>\\0<sha256>\\n" lines of its files (no manifest)."""
    lines = "".join(f"{path}\0{files[path]}\n" for path in sorted(files))
    return sha256(lines.encode())


def check_version(version: str) -> str:
    if not VERSION_RE.match(version):
        raise BundleError(
            f"version {version!r} is not allowed: 1-64 characters, letters, digits and . _ + -, "
            "starting with a letter or digit (e.g. 1.4.0, v1.4.0, 0.0.0+g1a2b3c4)"
        )
    return version


# --------------------------------------------------------------------------------------------- git


def _git(root: Path, *args: str) -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise BundleError("git is not installed: the bundle is built from git's tracked files") from None
    if result.returncode != 0:
        raise BundleError(f"git {' '.join(args)} failed in {root}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def tracked_files(root: Path) -> list[str]:
    """The tree's git-tracked files (`git ls-files`), repository-relative, sorted."""
    return sorted(p for p in _git(root, "ls-files", "-z").split("\0") if p)


def dirty_files(root: Path) -> list[str]:
    """Tracked files whose working copy differs from HEAD (staged or not); untracked files do not count."""
    out = _git(root, "status", "--porcelain", "--untracked-files=no", "-z")
    return sorted(entry[3:] for entry in out.split("\0") if len(entry) > 3)


def describe(root: Path) -> tuple[str, str, int]:
    """(version, commit, commit time): the tag on HEAD (`git describe --tags --exact-match`), else
    0.0.0+g<short sha>."""
    commit = _git(root, "rev-parse", "HEAD").strip()
    when = int(_git(root, "log", "-1", "--format=%ct", "HEAD").strip())
    result = subprocess.run(
        ["git", "-C", str(root), "describe", "--tags", "--exact-match", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    tag = result.stdout.strip() if result.returncode == 0 else ""
    version = tag or f"0.0.0+g{commit[:7]}"
    return version, commit, when


# ------------------------------------------------------------------------------------------ build


def layout(path: str) -> str | None:
    """Where repository file `path` goes in the bundle, or None when it does not ship."""
    parts = PurePosixPath(path).parts
    if "__pycache__" in parts or path.endswith((".pyc", ".pyo")):
        return None
    for source, target in LAYOUT:
        if source.endswith("/"):
            if path.startswith(source):
                return target + path[len(source) :]
        elif path == source:
            return target
    return None


def collect(root: Path, *, allow_dirty: bool = False) -> dict[str, bytes]:
    """The bundle's files (bundle path -> bytes) from the tree's tracked files; the loader added."""
    dirty = dirty_files(root)
    if dirty and not allow_dirty:
        shown = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
        raise BundleError(
            f"the tree at {root} has uncommitted changes to tracked files ({shown}): commit them, or pass "
            "--allow-dirty to bundle the working copies (the version then says .dirty)"
        )
    tracked = tracked_files(root)
    files: dict[str, bytes] = {}
    for path in tracked:
        target = layout(path)
        if target is None:
            continue
        source = root / path
        if not source.is_file():  # deleted in the working copy (allowed dirty), or a submodule
            continue
        files[target] = source.read_bytes()
    if LOADER_SOURCE not in tracked:
        raise BundleError(f"{LOADER_SOURCE} is not tracked in {root}: it becomes {LOADER}, the live DAG file")
    if LOADER in files:
        raise BundleError(f"{LOADER} is tracked in {root}: that name is the loader's ({LOADER_SOURCE}); rename it")
    files[LOADER] = (root / LOADER_SOURCE).read_bytes()
    for required in (LOCK_FILE, CONFIG_TEMPLATE):
        if required not in files:
            raise BundleError(f"{required} is missing from the tracked files of {root}: every bundle ships it")
    if not dag_ids(files):
        raise BundleError(f"no DAG file (dags/*.py) is tracked in {root}")
    return files


def make_manifest(
    files: Mapping[str, bytes], *, version: str, commit: str, dirty: bool, created: int
) -> dict[str, object]:
    hashes = {path: sha256(files[path]) for path in sorted(files)}
    return {
        "name": NAME,
        "version": version,
        "commit": commit,
        "dirty": dirty,
        "created": dt.datetime.fromtimestamp(created, dt.UTC).isoformat(),
        "lock": {"path": LOCK_FILE, "sha256": hashes[LOCK_FILE]},
        "dags": {dag_id: dag_params(files[f"dags/{dag_id}.py"]) for dag_id in dag_ids(files)},
        "files": hashes,
        "digest": content_digest(hashes),
    }


def manifest_bytes(manifest: Mapping[str, object]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def write_tarball(target: Path, files: Mapping[str, bytes], mtime: int) -> None:
    """Write the .tar.gz deterministically, atomically (a temporary file renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as zipped:
                with tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as tar:
                    for path in sorted(files):
                        data = files[path]
                        info = tarfile.TarInfo(path)
                        info.size = len(data)
                        info.mtime = mtime
                        info.mode = FILE_MODE
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        tar.addfile(info, io.BytesIO(data))
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def build(out: Path, root: Path, *, version: str | None = None, allow_dirty: bool = False) -> Bundle:
    """Build envsync-<version>.tar.gz in `out` from the tracked files of the git tree at `root`."""
    root = root.resolve()
    described, commit, created = describe(root)
    dirty = bool(dirty_files(root))
    if version is None:
        version = described + ((".dirty" if "+" in described else "+dirty") if dirty else "")
    check_version(version)
    log.info("bundling %s at commit %s as version %s%s", root, commit[:12], version, " (dirty)" if dirty else "")
    files = collect(root, allow_dirty=allow_dirty)
    manifest = make_manifest(files, version=version, commit=commit, dirty=dirty, created=created)
    contents = {**files, MANIFEST: manifest_bytes(manifest)}
    target = out / f"{NAME}-{version}.tar.gz"
    write_tarball(target, contents, created)
    bundle = Bundle(path=target, manifest=manifest, files=contents, sha256=sha256(target.read_bytes()))
    log.info("built %s: %d files, digest %s, sha256 %s", target, len(contents), bundle.digest[:12], bundle.sha256[:12])
    return bundle


# ------------------------------------------------------------------------------------------- read


def find(path: Path) -> Path:
    """`path` itself, or the one envsync-*.tar.gz in directory `path`."""
    if path.is_dir():
        found = sorted(path.glob(f"{NAME}-*.tar.gz"))
        if len(found) != 1:
            raise BundleError(
                f"{path} holds {len(found)} bundles ({', '.join(p.name for p in found) or 'none'}); "
                f"expected exactly one {NAME}-<version>.tar.gz, or pass the file itself"
            )
        return found[0]
    if not path.is_file():
        raise BundleError(f"bundle {path} does not exist")
    return path


def read(path: Path) -> Bundle:
    """Open a bundle and verify it: every file's sha256 and the digest match its MANIFEST.json."""
    path = find(path)
    raw = path.read_bytes()
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                name = member.name
                if name.startswith("/") or ".." in PurePosixPath(name).parts:
                    raise BundleError(f"bundle {path} holds an unsafe path {name!r}")
                extracted = tar.extractfile(member)
                assert extracted is not None  # a regular file
                files[name] = extracted.read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise BundleError(f"{path} is not a readable .tar.gz bundle: {error}") from None
    if MANIFEST not in files:
        raise BundleError(f"bundle {path} has no {MANIFEST}")
    try:
        manifest = json.loads(files[MANIFEST])
    except ValueError as error:
        raise BundleError(f"{MANIFEST} of {path} is not JSON: {error}") from None
    listed: dict[str, str] = manifest.get("files") or {}
    actual = {name: sha256(data) for name, data in files.items() if name != MANIFEST}
    if set(listed) != set(actual):
        extra, missing = sorted(set(actual) - set(listed)), sorted(set(listed) - set(actual))
        raise BundleError(f"bundle {path} does not match its manifest: unlisted files {extra}, missing files {missing}")
    changed = sorted(name for name in actual if actual[name] != listed[name])
    if changed:
        raise BundleError(f"bundle {path}: files changed since it was built (sha256 differs): {changed}")
    if content_digest(actual) != manifest.get("digest"):
        raise BundleError(f"bundle {path}: its digest {manifest.get('digest')!r} is not the digest of its files")
    check_version(str(manifest.get("version")))
    return Bundle(path=path, manifest=manifest, files=files, sha256=sha256(raw))
