"""Where the integration suite runs: the local emulators (default) or a real GCP sandbox project.

`make test-gcp` sets ENVSYNC_TEST_TARGET=gcp and runs tests/integration against the project named by
ENVSYNC_TEST_GCP_PROJECT, with application default credentials (or GOOGLE_APPLICATION_CREDENTIALS, or
the Airflow connection google_cloud_default, like envsync itself). No emulator is started.

On the emulators every test kit keeps a project of its own (envsync-demo, envsync-backup, ...) and
plain dataset names (sales, dev_sales, ...). On a real project they all share one project, so each
kit is a Namespace: every dataset and bucket it makes starts with the run prefix
``envsynct<yyyymmddhhmm><6 hex>`` followed by the kit's tag (main, bkp, rsd). Prod stand-ins become
``<ns>sales``, environment prefixes ``<ns>dev_`` (so dev of ``<ns>sales`` is ``<ns>dev_<ns>sales``),
the audit dataset ``<ns>envsync_audit``, the state bucket ``<run prefix>-<tag>-<hash>``. Tests keep
writing the plain (logical) names and map them with ``ds``, ``tref``, ``fq`` and ``sql``.

The session (see tests/conftest.py):
- preflight, before anything is created: credentials, the project answers (short timeouts, no
  retries), and it holds no dataset or bucket of the run-prefix family (``envsynct`` + 12 digits + 6
  hex) that this run did not create, e.g. one left by a killed run; otherwise it refuses to start;
- at the end (also after failures, Ctrl-C or SIGTERM) it deletes every dataset and bucket whose name
  starts with this run's prefix and that did not exist at preflight, and nothing else; datasets
  that appeared during the run without the prefix are reported as leaks, never deleted.

ENVSYNC_TEST_RUN_PREFIX=1 (without ENVSYNC_TEST_TARGET=gcp) rehearses the same naming, preflight and
clean-up on the emulators, in one project (envsync-sandbox); there every dataset must carry the run
prefix, so a test that escapes its namespace fails.
"""

from __future__ import annotations

import atexit
import copy
import datetime as dt
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

TARGET_ENV = "ENVSYNC_TEST_TARGET"  # "gcp": set by `make test-gcp`
PROJECT_ENV = "ENVSYNC_TEST_GCP_PROJECT"  # the sandbox project
PREFIXED_ENV = "ENVSYNC_TEST_RUN_PREFIX"  # "1": run prefixes on the emulators (a rehearsal of test-gcp)

SKIP_MESSAGE = (
    f"test-gcp skipped: set {PROJECT_ENV}=<sandbox project id> (and application default credentials or "
    "GOOGLE_APPLICATION_CREDENTIALS=<key file>) to run the integration suite on real BigQuery"
)

ON_GCP = os.environ.get(TARGET_ENV) == "gcp"
NAMESPACED = ON_GCP or os.environ.get(PREFIXED_ENV) == "1"
EMULATOR_SANDBOX_PROJECT = "envsync-sandbox"

RUN_FAMILY_RE = re.compile(r"^envsynct[0-9]{12}[0-9a-f]{6}")
ENV_PREFIXES = {
    "dev": "dev_",
    "qa": "qa_",
    "staging": "staging_",
    "test": "test_",
    "prodcopy": "prodcopy_",
    "backup": "backup_",
    "drill": "drill_",
}
AUDIT_DATASET = "envsync_audit"

# Google's defaults wait up to 3 x 3 s for a GCE metadata server and retry API calls for up to 600 s;
# a sandbox check must fail within seconds. Set before google.auth is imported (it reads them once).
API_TIMEOUT = 20.0
if ON_GCP:
    os.environ.setdefault("GCE_METADATA_TIMEOUT", "2")
    os.environ.setdefault("GCE_METADATA_DETECT_RETRIES", "1")


def new_run_prefix(now: dt.datetime | None = None) -> str:
    """``envsynct<yyyymmddhhmm><6 hex>``: lowercase letters and digits only, so that ``<prefix>dev_``
    is still a valid envsync environment prefix."""
    now = now or dt.datetime.now(dt.UTC)
    return f"envsynct{now:%Y%m%d%H%M}{secrets.token_hex(3)}"


RUN_PREFIX = new_run_prefix() if NAMESPACED else ""


class SandboxError(RuntimeError):
    """The sandbox project cannot be used; the message names the project, the cause and the fix."""


def sandbox_project() -> str:
    """The shared project of a namespaced run (as given: test modules read it at import time;
    checked_project() validates it before the session starts)."""
    return os.environ.get(PROJECT_ENV, "").strip() if ON_GCP else EMULATOR_SANDBOX_PROJECT


def checked_project() -> str:
    project = sandbox_project()
    if not project:
        raise SandboxError(f"test-gcp: {PROJECT_ENV} is not set. {SKIP_MESSAGE.split(': ', 1)[1]}")
    from envsync.core.identifiers import PROJECT_RE

    if not PROJECT_RE.fullmatch(project):
        raise SandboxError(
            f"test-gcp: {PROJECT_ENV}={project!r} is not a GCP project id (6-30 lowercase "
            "letters, digits or '-', starting with a letter). Nothing was created."
        )
    return project


# ----- names ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    """One test kit's datasets and buckets: plain names on the emulators, run-prefixed on a sandbox."""

    virtual_project: str  # the kit's own project on the emulators
    tag: str  # its part of the prefix on a shared project
    bare: tuple[str, ...]  # dataset names its SQL may use without a project (mapped by sql())

    @property
    def project(self) -> str:
        return sandbox_project() if NAMESPACED else self.virtual_project

    @property
    def prefix(self) -> str:
        return RUN_PREFIX + self.tag if NAMESPACED else ""

    def ds(self, name: str) -> str:
        """The real dataset of a logical one: ``sales`` -> ``<ns>sales``, ``dev_sales`` ->
        ``<ns>dev_<ns>sales``, ``test_short_sales`` -> ``<ns>test_short_<ns>sales``; real names stay."""
        prefix = self.prefix
        if not prefix or name.startswith(prefix):
            return name
        for env_prefix in ENV_PREFIXES.values():
            if name.startswith(env_prefix):
                rest = name[len(env_prefix) :]
                if env_prefix == ENV_PREFIXES["test"]:  # test_<name>_<ds>: the name has no '_'
                    test_name, _, dataset = rest.partition("_")
                    return f"{prefix}{env_prefix}{test_name}_{prefix}{dataset}"
                return f"{prefix}{env_prefix}{prefix}{rest}"
        return prefix + name

    def tref(self, name: str) -> str:
        """``dataset`` or ``dataset.table`` with the dataset mapped (no project)."""
        dataset, dot, rest = name.partition(".")
        return f"{self.ds(dataset)}{dot}{rest}"

    def fq(self, name: str) -> str:
        """``project.dataset[.table]`` of a logical ``dataset[.table]``."""
        return f"{self.project}.{self.tref(name)}"

    def logical(self, real: str) -> str | None:
        """The logical name of a real dataset of this namespace; None for any other dataset."""
        if not self.prefix:
            return real
        return real.replace(self.prefix, "") if real.startswith(self.prefix) else None

    def bucket(self, name: str) -> str:
        if not self.prefix:
            return name
        return f"{RUN_PREFIX}-{self.tag}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"

    def sql(self, text: str) -> str:
        """Map the datasets of SQL written with logical names: every `` `<project>.<dataset>. `` and
        the bare ``<dataset>.`` of the names in ``bare`` (e.g. the shipped audit reports)."""
        if not self.prefix:
            return text
        project = re.escape(self.project)
        text = re.sub(
            rf"`{project}\.([A-Za-z_][A-Za-z0-9_]*)\.", lambda m: f"`{self.project}.{self.ds(m.group(1))}.", text
        )
        names = "|".join(re.escape(n) for n in self.bare)
        return re.sub(rf"(?<![\w.-])({names})\.(?=[A-Za-z_`])", lambda m: f"{self.ds(m.group(1))}.", text)

    def config(self, data: dict[str, Any]) -> dict[str, Any]:
        """A config (as loaded from YAML, with logical names) for this namespace's real datasets."""
        if not self.prefix:
            return data
        out = copy.deepcopy(data)
        out["project"] = self.project
        prod = out.setdefault("prod", {})
        logical_prod = list(prod.get("datasets") or [])
        prod["datasets"] = [self.ds(d) for d in logical_prod]
        envs = out.get("environments") or {}
        for key, default in ENV_PREFIXES.items():
            env = dict(envs.get(key) or {})
            env["prefix"] = self.prefix + env.get("prefix", default)
            envs[key] = env
        envs["dev"]["keep"] = [self.tref(k) if "." in k else k for k in envs["dev"].get("keep") or []]
        out["environments"] = envs
        tables = {}
        for key, override in (out.get("tables") or {}).items():
            override = dict(override or {})
            if isinstance(override.get("parent"), dict):
                override["parent"] = {**override["parent"], "table": self.tref(override["parent"]["table"])}
            tables[self.tref(key)] = override
        out["tables"] = tables
        audit = dict(out.get("audit") or {})
        audit["dataset"] = self.ds(audit.get("dataset") or AUDIT_DATASET)
        out["audit"] = audit
        out["state"] = {**(out.get("state") or {}), "bucket": self.bucket(out["state"]["bucket"])}
        export = (out.get("backups") or {}).get("export") or {}
        if export.get("bucket"):
            out["backups"]["export"] = {**export, "bucket": self.bucket(export["bucket"])}
        seeds = dict(out.get("seeds") or {})
        seeds["dir"] = str(self._seeds_dir(seeds.get("dir") or "sql/seeds", logical_prod))
        out["seeds"] = seeds
        return out

    def _seeds_dir(self, source: str, datasets: Iterable[str]) -> Path:
        """A copy of the seed files with the prod datasets' folders under their real names."""
        root = Path(source) if Path(source).is_absolute() else REPO_ROOT / source
        target = _scratch() / f"seeds-{self.tag}-{hashlib.sha1(str(root).encode()).hexdigest()[:6]}"
        for dataset in datasets:
            if (root / dataset).is_dir() and not (target / self.ds(dataset)).exists():
                shutil.copytree(root / dataset, target / self.ds(dataset))
        target.mkdir(parents=True, exist_ok=True)
        return target


NAMESPACES = {
    ns.virtual_project: ns
    for ns in (
        Namespace("envsync-demo", "main", ("sales", "marketing", AUDIT_DATASET)),
        Namespace("envsync-backup", "bkp", ("shop", AUDIT_DATASET)),
        Namespace("envsync-reseed", "rsd", ("sales", "marketing", AUDIT_DATASET)),
        Namespace("envsync-migrate", "mig", ("sales", "marketing", AUDIT_DATASET)),
        Namespace("envsync-promote", "prm", ("sales", "marketing", AUDIT_DATASET)),
        Namespace("envsync-parity", "par", ("sales", "marketing", AUDIT_DATASET)),
        Namespace("envsync-season", "ssn", ("sales", "marketing", AUDIT_DATASET)),
        Namespace("envsync-overlap", "ovl", ("sales", "marketing", AUDIT_DATASET)),
    )
}


def namespace(virtual_project: str) -> Namespace:
    try:
        return NAMESPACES[virtual_project]
    except KeyError:
        raise KeyError(f"no test namespace for project {virtual_project!r}: add it to sandbox.NAMESPACES") from None


def real_config(data: dict[str, Any]) -> dict[str, Any]:
    """A test config written with a kit's emulator project and logical names, made real."""
    return namespace(data["project"]).config(data) if NAMESPACED else data


_SCRATCH: list[Path] = []


def _scratch() -> Path:
    if not _SCRATCH:
        path = Path(tempfile.mkdtemp(prefix="envsync-sandbox-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _SCRATCH.append(path)
    return _SCRATCH[0]


# ----- the session: preflight, ownership, clean-up -------------------------------------------------


@dataclass
class Session:
    """One run on a shared project: what existed before it, and what its clean-up did."""

    project: str
    run_prefix: str
    before: set[str]  # dataset ids present at preflight
    bq: Any = field(repr=False)
    gcs: Any = field(repr=False)
    done: bool = False
    deleted_datasets: list[str] = field(default_factory=list)
    deleted_buckets: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)  # new datasets without the run prefix
    left: list[str] = field(default_factory=list)  # run-prefixed objects that could not be deleted

    def owns(self, dataset_id: str) -> bool:
        return dataset_id.startswith(self.run_prefix) and dataset_id not in self.before

    def summary(self) -> str:
        text = (
            f"test-gcp clean-up of run {self.run_prefix} in {self.project}: deleted "
            f"{len(self.deleted_datasets)} datasets and {len(self.deleted_buckets)} buckets"
        )
        if self.left:
            text += "; COULD NOT DELETE " + ", ".join(self.left)
        if self.leaked:
            text += "; LEAKED (created during the run without the run prefix, left in place): " + ", ".join(self.leaked)
        return text


def _dataset_ids(bq: Any, project: str) -> list[str]:
    return [d.dataset_id for d in bq.list_datasets(project, retry=None, timeout=API_TIMEOUT, page_size=1000)]


def _bucket_names(gcs: Any, prefix: str) -> list[str]:
    names = [b.name for b in gcs.list_buckets(prefix=prefix, retry=None, timeout=API_TIMEOUT)]
    return [name for name in names if name.startswith(prefix)]  # never trust a server-side filter to delete


def foreign_objects(datasets: Iterable[str], buckets: Iterable[str]) -> tuple[list[str], list[str]]:
    """Datasets and buckets of the run-prefix family: left by another run, never this one's."""
    return (sorted(d for d in datasets if RUN_FAMILY_RE.match(d)), sorted(b for b in buckets if RUN_FAMILY_RE.match(b)))


def refusal(project: str, datasets: list[str], buckets: list[str]) -> str:
    lines = [
        f"test-gcp: refusing to start on project {project!r}: it holds datasets or buckets named like "
        "test-gcp's run prefixes (envsynct<yyyymmddhhmm><6 hex>...) that this run did not create, most "
        "likely left by a run that was killed. Check and delete them, then run again:"
    ]
    lines += [f"  bq rm -r -f -d {project}:{d}" for d in datasets]
    lines += [f"  gcloud storage rm -r gs://{b}" for b in buckets]
    lines.append("Nothing was created.")
    return "\n".join(lines)


def preflight(bq: Any, gcs: Any, project: str, run_prefix: str) -> Session:
    """Check the project before anything is created; raise SandboxError naming the cause."""
    datasets = _dataset_ids(bq, project)
    buckets = _bucket_names(gcs, "envsynct")
    foreign = foreign_objects(datasets, buckets)
    if foreign[0] or foreign[1]:
        raise SandboxError(refusal(project, *foreign))
    return Session(project=project, run_prefix=run_prefix, before=set(datasets), bq=bq, gcs=gcs)


def cleanup(session: Session) -> Session:
    """Delete this run's datasets and buckets (run prefix, absent at preflight). Idempotent."""
    if session.done:
        return session
    session.done = True
    bq, gcs = session.bq, session.gcs
    try:
        now = _dataset_ids(bq, session.project)
    except Exception as error:  # report it (the run then fails) instead of crashing the session's end
        now = []
        session.left.append(
            f"every dataset named {session.run_prefix}... (listing failed: {type(error).__name__}: {error})"
        )
    for dataset_id in sorted(now):
        if session.owns(dataset_id):
            try:
                bq.delete_dataset(
                    f"{session.project}.{dataset_id}", delete_contents=True, not_found_ok=True, timeout=API_TIMEOUT * 3
                )
                session.deleted_datasets.append(dataset_id)
            except Exception as error:  # keep going: delete everything else, then report
                session.left.append(f"dataset {dataset_id} ({type(error).__name__}: {error})")
        elif dataset_id not in session.before:
            session.leaked.append(dataset_id)
    try:
        buckets = _bucket_names(gcs, session.run_prefix)
    except Exception as error:
        buckets = []
        session.left.append(
            f"every bucket named {session.run_prefix}... (listing failed: {type(error).__name__}: {error})"
        )
    for name in buckets:
        try:
            bucket = gcs.bucket(name)
            for blob in gcs.list_blobs(name, timeout=API_TIMEOUT):
                blob.delete(timeout=API_TIMEOUT)
            bucket.delete(timeout=API_TIMEOUT)
            session.deleted_buckets.append(name)
        except Exception as error:
            session.left.append(f"bucket gs://{name} ({type(error).__name__}: {error})")
    return session


class _Request:
    """google.auth's requests transport with a bounded timeout (its default is 120 s)."""

    def __init__(self, timeout: float) -> None:
        import google.auth.transport.requests

        self._request = google.auth.transport.requests.Request()
        self._timeout = timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["timeout"] = min(kwargs.get("timeout") or self._timeout, self._timeout)
        return self._request(*args, **kwargs)


def _gcp_clients(project: str) -> tuple[Any, Any]:
    """envsync's own clients (Airflow connection google_cloud_default, else application default
    credentials), with the credentials refreshed once, quickly, so that a problem shows here."""
    import google.auth.exceptions

    from envsync.core.clients import bigquery_client, storage_client

    nothing = "Nothing was created."
    try:
        if "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT" not in os.environ:  # the session's own Airflow DB holds none
            import google.auth

            google.auth.default()  # application default credentials: fails here without importing Airflow
        bq = bigquery_client(project, "US")
    except google.auth.exceptions.DefaultCredentialsError as error:
        raise SandboxError(
            f"test-gcp: cannot use project {project!r}: no Google credentials found ({error}). Run `gcloud auth "
            "application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS=<service account key file> "
            f"(or the Airflow connection google_cloud_default). {nothing}"
        ) from None
    except (OSError, ValueError) as error:  # unreadable or malformed key file
        raise SandboxError(
            f"test-gcp: cannot use project {project!r}: the credentials cannot be loaded: {error}. {nothing}"
        ) from None
    try:
        bq._credentials.refresh(_Request(API_TIMEOUT))
    except google.auth.exceptions.RefreshError as error:
        raise SandboxError(
            f"test-gcp: cannot use project {project!r}: Google rejected the credentials: {error}. {nothing}"
        ) from None
    except google.auth.exceptions.TransportError as error:
        raise SandboxError(
            f"test-gcp: cannot use project {project!r}: Google's token service is unreachable "
            f"(no network or a proxy/firewall?): {_short(error)}. {nothing}"
        ) from None
    return bq, storage_client(project)


def _short(error: BaseException) -> str:
    """The cause inside urllib3's long message, e.g. "Failed to resolve 'oauth2.googleapis.com' (...)"."""
    text = str(error)
    if "Caused by " in text:
        cause = text.split("Caused by ", 1)[1]
        text = cause.rsplit("): ", 1)[-1].rstrip("\"')")
        text += ")" if text.count("(") > text.count(")") else ""
    return text[:300]


def start_gcp_session() -> Session:
    """Preflight of `make test-gcp`; registers the clean-up. Raises SandboxError, having created nothing."""
    import google.api_core.exceptions as api
    import google.auth.exceptions
    import requests

    project = checked_project()
    bq, gcs = _gcp_clients(project)
    nothing = "Nothing was created."
    try:
        session = preflight(bq, gcs, project, RUN_PREFIX)
    except api.NotFound as error:
        raise SandboxError(
            f"test-gcp: project {project!r} was not found (is the id right?): {error.message}. {nothing}"
        ) from None
    except api.Forbidden as error:
        raise SandboxError(
            f"test-gcp: the credentials may not use project {project!r} (it may not exist, its "
            "BigQuery or Cloud Storage API may be disabled, or a role is missing: see the README, "
            f"'Trying envsync on real GCP'): {error.message}. {nothing}"
        ) from None
    except api.GoogleAPICallError as error:
        raise SandboxError(f"test-gcp: project {project!r} did not answer as expected: {error}. {nothing}") from None
    except (requests.exceptions.RequestException, google.auth.exceptions.TransportError, OSError) as error:
        raise SandboxError(
            f"test-gcp: cannot reach Google's APIs for project {project!r} (no network or a "
            f"proxy/firewall?): {_short(error)}. {nothing}"
        ) from None
    register(session)
    atexit.register(finish)
    return session


_SESSIONS: list[Session] = []


def register(session: Session) -> None:
    """Make `session` the one finish() cleans up and the terminal summary reports."""
    _SESSIONS.append(session)


def current() -> Session | None:
    return _SESSIONS[-1] if _SESSIONS else None


def finish() -> Session | None:
    """Clean up the GCP session (once; also from atexit)."""
    session = current()
    if session is not None and not session.done:
        cleanup(session)
    return session


# ----- `make test-gcp` -----------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Print the one-line skip without ENVSYNC_TEST_GCP_PROJECT, else run the integration suite on it."""
    import sys

    if not os.environ.get(PROJECT_ENV, "").strip():
        print(SKIP_MESSAGE)
        return 0
    os.environ[TARGET_ENV] = "gcp"
    os.environ.pop(PREFIXED_ENV, None)
    os.chdir(REPO_ROOT)
    args = [sys.executable, "-m", "pytest", "tests/integration", "-m", "integration and not gcp_incompatible", *argv]
    sys.stdout.flush()
    os.execv(sys.executable, args)


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
