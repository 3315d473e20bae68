"""Start and stop the local BigQuery and GCS emulators as background processes on 127.0.0.1.

Why: envsync is developed and tested against local-bigquery + gcp-storage-emulator (see
EMULATORS.md). They run from their own Python 3.13 venv (``.venv-emulators``), so this module only
launches them; it never imports them. The BigQuery emulator runs as ``python -m bqfidelity serve``:
local-bigquery with the fidelity layer of ``emulators/bqfidelity`` applied. Each server runs in its own session (process
group) so that ``down`` can stop it with everything it spawned, and survives the ``up`` command that
started it. Pids, ports and logs live under ``<root>/run``.

CLI: ``python -m envsync.dev.devstack up|down|status [--root DIR] [--project P] [--bq-port N]
[--grpc-port N] [--gcs-port N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
EXTENSIONS = ("ducklake", "icu", "spatial", "httpfs")
SERVICES = ("bigquery", "gcs")
STOP_GRACE_SECONDS = 5.0
# The fidelity layer (package bqfidelity) that makes the BigQuery emulator answer as BigQuery does.
FIDELITY_DIR = REPO_ROOT / "emulators"


def _default_venv() -> Path:
    env = os.environ.get("ENVSYNC_EMULATOR_VENV")
    return Path(env) if env else REPO_ROOT / ".venv-emulators"


@dataclass(frozen=True)
class Stack:
    """Where the emulators keep their data and which loopback ports they listen on."""

    root: Path = field(default_factory=lambda: REPO_ROOT / ".devstack")
    project: str = "envsync-demo"
    bq_port: int = 9050
    grpc_port: int = 9060
    gcs_port: int = 9023
    venv: Path = field(default_factory=_default_venv)
    # A virtual clock for both emulators (tests that play a schedule forward): the file holds the
    # offset from the real time, `+<seconds>`, given to libfaketime in the emulator processes when
    # they start (see `clock_env`; `set_clock` moves it and restarts them); None: the real clock.
    clock_file: Path | None = None
    # Job latency of the BigQuery emulator (tests that stop a client while its job still runs): the
    # file holds a number of seconds, read again at every job, that each job stays RUNNING before it
    # runs (jobs.cancel meanwhile ends it "stopped"); missing, empty or 0: none. The emulator's
    # BQFIDELITY_LATENCY_FILE (emulators/bqfidelity/latency.py); None: jobs run at once.
    latency_file: Path | None = None
    # BigQuery's rate limits in the BigQuery emulator (emulators/bqfidelity/ratelimits.py), its
    # BQFIDELITY_RATE_LIMITS: a JSON object overriding some limits (tests that reach one, e.g.
    # '{"table_updates": 2}') or "off"; None: BigQuery's figures.
    rate_limits: str | None = None

    def __post_init__(self) -> None:
        # Absolute paths: the servers run with cwd=root, and pid files must not depend on our cwd.
        object.__setattr__(self, "root", Path(self.root).absolute())
        object.__setattr__(self, "venv", Path(self.venv).absolute())
        if self.clock_file is not None:
            object.__setattr__(self, "clock_file", Path(self.clock_file).absolute())
        if self.latency_file is not None:
            object.__setattr__(self, "latency_file", Path(self.latency_file).absolute())

    @property
    def home(self) -> Path:
        """Private HOME of the BigQuery emulator: DuckDB looks for its extensions in ~/.duckdb."""
        return self.root / "home"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def analyzer_cache(self) -> Path:
        """Compiled GoogleSQL (ZetaSQL) WebAssembly module of the emulator's analyzer (bqfidelity)."""
        return self.root / "zetasql"

    @property
    def analyzer_stats(self) -> Path:
        """Counters of the emulator's GoogleSQL analyzer (JSON, rewritten after every statement)."""
        return self.run_dir / "analyzer.json"

    @property
    def bq_url(self) -> str:
        return f"http://{HOST}:{self.bq_port}"

    @property
    def gcs_url(self) -> str:
        return f"http://{HOST}:{self.gcs_port}"

    def env(self) -> dict[str, str]:
        """Variables that point the Google clients (and envsync.core.clients) at this stack."""
        return {"BIGQUERY_EMULATOR_HOST": self.bq_url, "STORAGE_EMULATOR_HOST": self.gcs_url}

    def pid_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.log"

    def ports(self, service: str) -> dict[str, int]:
        """The ports a service binds, by role."""
        if service == "bigquery":
            return {"port": self.bq_port, "grpc_port": self.grpc_port}
        return {"port": self.gcs_port}


class DevstackError(RuntimeError):
    """The emulators could not be started or stopped; the message says why and what to do."""


# --------------------------------------------------------------------------------------------
# Ports


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback TCP port that is free now (not one this process already handed out)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise DevstackError("could not find a free TCP port on 127.0.0.1")


def _port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _port_owner(port: int) -> str | None:
    """'pid N (name: cmdline)' of the process listening on port, when psutil can tell."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return None
            try:
                proc = psutil.Process(conn.pid)
                cmdline = " ".join(" ".join(proc.cmdline()).split())[:200]
                return f"pid {conn.pid} ({proc.name()}: {cmdline})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return None


def _answers(url: str, timeout: float = 1.0) -> bool:
    """True when GET url returns HTTP 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback only
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _ready_url(stack: Stack, service: str, port: int | None = None) -> str:
    """The URL that answers 200 once the service is ready (on port, default the stack's port)."""
    port = port or stack.ports(service)["port"]
    if service == "bigquery":
        return f"http://{HOST}:{port}/bigquery/v2/projects/{stack.project}/datasets"
    return f"http://{HOST}:{port}/storage/v1/b"


# --------------------------------------------------------------------------------------------
# Pid files: {"pid", "create_time", "ports", "cmd"}; create_time guards against pid reuse.


def _read_record(stack: Stack, service: str) -> dict | None:
    path = stack.pid_file(service)
    try:
        record = json.loads(path.read_text())
        int(record["pid"])
        float(record["create_time"])
        return record
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("Ignoring unreadable pid file %s", path)
        return None


def _process(record: dict | None) -> psutil.Process | None:
    """The live process the record describes, or None (dead, zombie, or pid reused)."""
    if not record:
        return None
    try:
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["create_time"])) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(proc.pid, os.WNOHANG)  # reap it if it is our child
            return None
        return proc
    except psutil.Error:
        return None


def _group_members(pgid: int, not_before: float) -> list[psutil.Process]:
    """Live processes of process group pgid started no earlier than not_before."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.create_time() >= not_before - 1.0:
                members.append(proc)
        except (psutil.Error, OSError):
            continue
    return members


def _runs_from(proc: psutil.Process, venv: Path) -> bool:
    try:
        return str(venv) in " ".join(proc.cmdline())
    except psutil.Error:
        return False


# --------------------------------------------------------------------------------------------
# DuckDB extensions


def _duckdb_version(venv: Path) -> str | None:
    for dist in sorted(venv.glob("lib/python*/site-packages/duckdb-*.dist-info")):
        return dist.name[len("duckdb-") : -len(".dist-info")]
    return None


def extensions_present(stack: Stack) -> bool:
    """True when every DuckDB extension the BigQuery emulator loads is installed in stack.home."""
    version = _duckdb_version(stack.venv)
    base = stack.home / ".duckdb" / "extensions"
    pattern = f"v{version}/*" if version else "*/*"
    return all(any(base.glob(f"{pattern}/{name}.duckdb_extension")) for name in EXTENSIONS)


def ensure_extensions(stack: Stack) -> None:
    """Install the DuckDB extensions from their PyPI packages into stack.home (offline; skip if present).

    DuckDB would otherwise try to download them at run time, which fails without internet access.
    """
    if extensions_present(stack):
        return
    stack.home.mkdir(parents=True, exist_ok=True)
    code = f"from duckdb_extensions import import_extension as i\nfor name in {EXTENSIONS!r}:\n    i(name)\n"
    env = _child_env({"HOME": str(stack.home)})
    log.info("Installing DuckDB extensions into %s", stack.home)
    result = subprocess.run(
        [str(stack.venv / "bin" / "python"), "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not extensions_present(stack):
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise DevstackError(
            f"installing the DuckDB extensions into {stack.home} failed (exit {result.returncode}):\n{tail}"
        )


# --------------------------------------------------------------------------------------------
# GoogleSQL analyzer module


def analyzer_cache_present(stack: Stack) -> bool:
    return any(stack.analyzer_cache.glob("zetasql-*.cwasm"))


def ensure_analyzer_cache(stack: Stack) -> None:
    """Compile the emulator's GoogleSQL analyzer (ZetaSQL, WebAssembly) into stack.analyzer_cache, once.

    Compiling takes about 25 s and 1 GB; the emulator then loads the cached module in under a second
    on its first query. Done here, before the server starts, so that neither readiness nor the first
    query waits for it. Skipped when a compiled module is already there.
    """
    if analyzer_cache_present(stack):
        return
    stack.analyzer_cache.mkdir(parents=True, exist_ok=True)
    log.info("Compiling the GoogleSQL analyzer into %s (once, about 25 s)", stack.analyzer_cache)
    result = subprocess.run(
        [str(stack.venv / "bin" / "python"), "-m", "bqfidelity.zsql", "warm", "--cache", str(stack.analyzer_cache)],
        env=_child_env({"HOME": str(stack.home), "PYTHONPATH": str(FIDELITY_DIR)}),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not analyzer_cache_present(stack):
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise DevstackError(
            f"compiling the GoogleSQL analyzer into {stack.analyzer_cache} failed (exit {result.returncode}):\n{tail}"
        )


# --------------------------------------------------------------------------------------------
# Start / stop


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """Our environment minus what would leak this venv, an old emulator address or a latency or
    rate-limit setting other than the stack's own into a child."""
    leaks = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"}
    own = {"BQFIDELITY_LATENCY_FILE", "BQFIDELITY_RATE_LIMITS"}
    env = {key: value for key, value in os.environ.items() if key not in leaks | own}
    env.update(extra)
    return env


def libfaketime_library() -> Path:
    """libfaketime's shared library, from the pinned `libfaketime` package of this environment."""
    import importlib.util

    spec = importlib.util.find_spec("libfaketime")
    if spec is None or spec.origin is None:
        raise DevstackError("a virtual clock needs the libfaketime package (requirements.txt): run make install")
    library = Path(spec.origin).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    if not library.is_file():
        raise DevstackError(f"libfaketime's library is missing: searched {library}")
    return library


def clock_offset(clock_file: Path) -> str:
    """The offset a clock file holds (`+<seconds>` or `-<seconds>`), checked: DevstackError otherwise."""
    text = clock_file.read_text().strip()
    if not re.fullmatch(r"[+-]\d+(\.\d+)?", text):
        raise DevstackError(f"clock file {clock_file} holds {text!r}: expected an offset in seconds, e.g. +86400")
    return text


def clock_env(clock_file: Path) -> dict[str, str]:
    """Variables that put a process on the virtual clock of `clock_file` (libfaketime, preloaded): its
    wall clock (Python's and DuckDB's alike) reads the real time plus the offset the file holds when the
    process starts; monotonic clocks stay real, so timeouts and sleeps are unaffected.

    The offset is given as FAKETIME, read once, and never as FAKETIME_TIMESTAMP_FILE: libfaketime
    re-reads that file into static buffers shared by all threads, and in the multi-threaded emulator
    (FAKETIME_NO_CACHE, every reading) two threads at once once made it parse a half-written buffer
    and exit the process ("failed to parse FAKETIME timestamp"). A process follows a moved clock by
    being restarted (`set_clock`)."""
    return {
        "LD_PRELOAD": str(libfaketime_library()),
        "FAKETIME": clock_offset(clock_file),
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def set_clock(stack: Stack, offset_seconds: int, timeout: float = 120) -> None:
    """Move the virtual clock of `stack` to `offset_seconds` from the real time: the clock file is
    replaced at once (never seen half-written) and emulators already running are restarted on it (their
    data stays); stopped ones read it when they start."""
    if stack.clock_file is None:
        raise DevstackError("this stack has no virtual clock: create it with Stack(clock_file=...)")
    stack.clock_file.parent.mkdir(parents=True, exist_ok=True)
    partial = stack.clock_file.with_name(f".{stack.clock_file.name}.{os.getpid()}")
    partial.write_text(f"{offset_seconds:+d}\n")
    os.replace(partial, stack.clock_file)
    if any(_process(_read_record(stack, service)) is not None for service in SERVICES):
        down(stack)
        up(stack, timeout=timeout)


def _command(stack: Stack, service: str) -> tuple[list[str], dict[str, str]]:
    bin_dir = stack.venv / "bin"
    if service == "bigquery":
        # local-bigquery, with the fidelity layer of emulators/bqfidelity applied before it serves.
        cmd = [
            str(bin_dir / "python"), "-m", "bqfidelity", "serve",
            "--host", HOST, "--port", str(stack.bq_port), "--grpc-port", str(stack.grpc_port),
            "--project", stack.project, "--data-dir", str(stack.root / "bigquery"),
        ]  # fmt: skip
        env = _child_env(
            {
                "HOME": str(stack.home),
                "STORAGE_EMULATOR_HOST": stack.gcs_url,
                "PYTHONPATH": str(FIDELITY_DIR),
                "BQFIDELITY_CACHE": str(stack.analyzer_cache),
                "BQFIDELITY_STATS": str(stack.analyzer_stats),
            }
        )
        if stack.latency_file is not None:
            env["BQFIDELITY_LATENCY_FILE"] = str(stack.latency_file)
        if stack.rate_limits is not None:
            env["BQFIDELITY_RATE_LIMITS"] = stack.rate_limits
    else:
        # gcp-storage-emulator with Cloud Storage's request preconditions (emulators/bqfidelity/gcs.py)
        cmd = [
            str(bin_dir / "python"), "-m", "bqfidelity.gcs", "start",
            "--host", HOST, "--port", str(stack.gcs_port), "-q",
        ]  # fmt: skip
        env = _child_env({"STORAGE_BASE": str(stack.root / "gcs"), "PYTHONPATH": str(FIDELITY_DIR)})
    if stack.clock_file is not None:
        if not stack.clock_file.exists():
            stack.clock_file.write_text("+0\n")
        env.update(clock_env(stack.clock_file))
    return cmd, env


def _start(stack: Stack, service: str) -> tuple[subprocess.Popen, int]:
    """Launch one emulator in its own session; returns the process and the log offset it starts at."""
    cmd, env = _command(stack, service)
    log_path = stack.log_file(service)
    with log_path.open("ab") as log_fh:
        offset = log_fh.tell()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log_fh.write(f"=== {stamp} envsync.dev.devstack starting: {' '.join(cmd)}\n".encode())
        log_fh.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            cwd=str(stack.root),
            env=env,
            start_new_session=True,
        )
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        create_time = time.time()
    record = {"pid": proc.pid, "create_time": create_time, "ports": stack.ports(service), "cmd": cmd}
    stack.pid_file(service).write_text(json.dumps(record, indent=1) + "\n")
    log.info("Started %s emulator: pid %d, log %s", service, proc.pid, log_path)
    return proc, offset


def _log_tail(path: Path, offset: int = 0, lines: int = 20) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read()[-16384:].decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(log is empty)"


def _stop_record(stack: Stack, service: str) -> bool:
    """Stop the process group recorded for service, remove its pid file; True if something ran."""
    record = _read_record(stack, service)
    stopped = False
    if record:
        pgid = int(record["pid"])
        leader = _process(record)
        members = _group_members(pgid, float(record["create_time"]))
        if leader is None:
            # The leader is gone, so its pid (= pgid) may have been reused: only stragglers that
            # run from the emulator venv are certainly ours.
            members = [p for p in members if _runs_from(p, stack.venv)]
        elif leader not in members:
            members.append(leader)
        if members:
            stopped = True
            log.info("Stopping %s emulator (process group %d)", service, pgid)
            _signal_all(pgid, members, signal.SIGTERM)
            alive = _wait_gone(members, STOP_GRACE_SECONDS)
            if alive:
                log.warning("%s emulator did not stop on SIGTERM; sending SIGKILL", service)
                _signal_all(pgid, alive, signal.SIGKILL)
                alive = _wait_gone(alive, STOP_GRACE_SECONDS)
                if alive:
                    raise DevstackError(
                        f"could not stop the {service} emulator: pids {[p.pid for p in alive]} survive SIGKILL"
                    )
    with contextlib.suppress(FileNotFoundError):
        stack.pid_file(service).unlink()
    return stopped


def _is_gone(proc: psutil.Process) -> bool:
    """Exited and released its sockets.

    A zombie counts (this machine's init reaps orphans only every few seconds), but only once its
    last thread is gone: a multi-threaded server's main thread turns zombie while the other threads
    still hold the open files, listening sockets included.
    """
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return False
        if len(os.listdir(f"/proc/{proc.pid}/task")) > 1:
            return False
    except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
        return True
    except (psutil.Error, OSError):
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(proc.pid, os.WNOHANG)  # reap it if it is our child
    return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to timeout for procs to exit; returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive:
        alive = [proc for proc in alive if not _is_gone(proc)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return alive


def _signal_all(pgid: int, procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for proc in procs:  # members that left the group (setsid) still get the signal
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _check_prerequisites(stack: Stack) -> None:
    missing = [
        name
        for name in ("python", "local-bigquery", "gcp-storage-emulator")
        if not (stack.venv / "bin" / name).exists()
    ]
    if missing:
        raise DevstackError(
            f"the emulator venv {stack.venv} lacks {', '.join(missing)}: run `make install` "
            "(or point ENVSYNC_EMULATOR_VENV at a venv built from emulators/requirements.txt)"
        )
    ports = [stack.bq_port, stack.grpc_port, stack.gcs_port]
    if len(set(ports)) != len(ports):
        raise DevstackError(
            f"the BigQuery, gRPC and GCS ports must differ (got {stack.bq_port}, {stack.grpc_port}, {stack.gcs_port})"
        )


def up(stack: Stack, timeout: float = 60) -> None:
    """Start both emulators and wait until they answer; a no-op when ours already run and answer.

    Raises DevstackError when a port is taken by another process, or when a server exits or does not
    answer within timeout; then whatever this call started is stopped again and the log tail is
    part of the message.
    """
    _check_prerequisites(stack)
    for sub in ("home", "gcs", "bigquery", "run"):
        (stack.root / sub).mkdir(parents=True, exist_ok=True)

    running: dict[str, psutil.Process] = {}
    for service in SERVICES:
        record = _read_record(stack, service)
        proc = _process(record)
        if proc is None:
            if record is not None:
                _stop_record(stack, service)  # stale pid file, or stragglers of a dead leader
            continue
        if record and record.get("ports") != stack.ports(service):
            raise DevstackError(
                f"the {service} emulator of {stack.root} already runs (pid {proc.pid}) with ports "
                f"{record.get('ports')}, not {stack.ports(service)}: run `down` first"
            )
        running[service] = proc

    to_start = [s for s in SERVICES if s not in running]
    for service in to_start:
        for role, port in stack.ports(service).items():
            if not _port_is_free(port):
                owner = _port_owner(port)
                raise DevstackError(
                    f"port {port} ({service} {role.replace('_', ' ')}) on {HOST} is already in use"
                    + (f" by {owner}" if owner else " by another process")
                    + "; stop it or choose other ports (--bq-port/--grpc-port/--gcs-port)"
                )
    if "bigquery" in to_start:
        ensure_extensions(stack)
        ensure_analyzer_cache(stack)

    started: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for service in ("gcs", "bigquery"):  # GCS first: BigQuery extract jobs write into it
            if service in to_start:
                started[service] = _start(stack, service)
        _wait_until_answering(stack, started, list(SERVICES), timeout)
    except BaseException:
        for service in started:
            with contextlib.suppress(DevstackError):
                _stop_record(stack, service)
        raise


def _wait_until_answering(
    stack: Stack, started: dict[str, tuple[subprocess.Popen, int]], services: list[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        for service in list(pending):
            if service in started:
                proc, offset = started[service]
                code = proc.poll()
                if code is not None:
                    raise DevstackError(
                        f"the {service} emulator exited with code {code} while starting; "
                        f"end of {stack.log_file(service)}:\n{_log_tail(stack.log_file(service), offset)}"
                    )
            if _answers(_ready_url(stack, service)):
                pending.remove(service)
        if not pending:
            return
        if time.monotonic() > deadline:
            details = []
            for service in pending:
                offset = started[service][1] if service in started else 0
                details.append(f"--- end of {stack.log_file(service)}:\n{_log_tail(stack.log_file(service), offset)}")
            raise DevstackError(
                f"{' and '.join(pending)} emulator did not answer within {timeout:g}s "
                f"({', '.join(_ready_url(stack, s) for s in pending)})\n" + "\n".join(details)
            )
        time.sleep(0.1)


def down(stack: Stack) -> None:
    """Stop both emulators (SIGTERM, then SIGKILL after a few seconds, whole process group). Idempotent."""
    errors = []
    for service in ("bigquery", "gcs"):
        try:
            _stop_record(stack, service)
        except DevstackError as exc:
            errors.append(str(exc))
    if errors:
        raise DevstackError("; ".join(errors))


def status(stack: Stack) -> dict[str, dict]:
    """Per service: pid (None if not ours/running), ports, url, running, answering, log path."""
    result: dict[str, dict] = {}
    for service in SERVICES:
        record = _read_record(stack, service)
        proc = _process(record)
        # A running service is reported on the ports it was started with.
        ports = dict((record or {}).get("ports") or {}) if proc is not None else {}
        ports = ports or stack.ports(service)
        result[service] = {
            "pid": proc.pid if proc is not None else None,
            **ports,
            "url": f"http://{HOST}:{ports['port']}",
            "running": proc is not None,
            "answering": _answers(_ready_url(stack, service, ports["port"])),
            "log": str(stack.log_file(service)),
        }
    return result


# --------------------------------------------------------------------------------------------
# CLI


def _describe(service: str, info: dict) -> str:
    name = {"bigquery": "BigQuery", "gcs": "GCS"}[service]
    extra = f" (gRPC {info['grpc_port']})" if "grpc_port" in info else ""
    if info["running"] and info["answering"]:
        return f"{name:<9} running    pid {info['pid']:<7} {info['url']}{extra}  log {info['log']}"
    if info["running"]:
        return f"{name:<9} NOT ANSWERING pid {info['pid']} {info['url']}{extra}  log {info['log']}"
    if info["answering"]:
        return f"{name:<9} stopped    ({info['url']} answers, but not from a process of this devstack)"
    return f"{name:<9} stopped    port {info['port']}{extra}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m envsync.dev.devstack``."""
    parser = argparse.ArgumentParser(prog="python -m envsync.dev.devstack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    default = Stack()
    parser.add_argument("--root", type=Path, default=default.root, help="data dir (default %(default)s)")
    parser.add_argument("--project", default=default.project)
    parser.add_argument("--bq-port", type=int, default=default.bq_port)
    parser.add_argument("--grpc-port", type=int, default=default.grpc_port)
    parser.add_argument("--gcs-port", type=int, default=default.gcs_port)
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for `up`")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    stack = Stack(
        root=args.root.resolve(),
        project=args.project,
        bq_port=args.bq_port,
        grpc_port=args.grpc_port,
        gcs_port=args.gcs_port,
    )
    if args.command == "env":  # for shells: eval "$(python -m envsync.dev.devstack env)"
        print("export " + " ".join(f"{k}={v}" for k, v in stack.env().items()))
        return 0
    try:
        if args.command == "up":
            up(stack, timeout=args.timeout)
        elif args.command == "down":
            before = status(stack)
            down(stack)
            for service in SERVICES:
                name = {"bigquery": "BigQuery", "gcs": "GCS"}[service]
                pid = before[service]["pid"]
                print(f"{name:<9} stopped" + (f"    (was pid {pid})" if pid else "    (was not running)"))
            return 0
    except DevstackError as exc:
        print(f"devstack {args.command} failed: {exc}", file=sys.stderr)
        return 1
    for service, info in status(stack).items():
        print(_describe(service, info))
    if args.command == "up":
        print("export " + " ".join(f"{k}={v}" for k, v in stack.env().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
