"""A real, throw-away Airflow cluster for end-to-end tests: Postgres metadata DB, separate components.

`AirflowCluster` creates a fresh Postgres database and AIRFLOW_HOME, runs `airflow db migrate`, then
starts the api-server, scheduler and dag-processor (optionally the triggerer, and a Celery worker
for the CeleryExecutor) as separate processes, each in its own process group, all bound to
127.0.0.1, with their output in `<AIRFLOW_HOME>/<component>.log`. It talks to the cluster through
the public REST API (JWT from the simple auth manager) and runs backfills through the real CLI.
`stop()` terminates every process group, then drops the database (and the Celery keys in Redis).

    with AirflowCluster(extra_env=emulators.env()) as cluster:
        cluster.wait_for_dag("cleanup_test_environments")
        cluster.unpause("cleanup_test_environments")
        run = cluster.trigger("cleanup_test_environments", conf={})
        [done] = cluster.wait_for_runs("cleanup_test_environments", 1, timeout=90)

Dependencies: the standard library, psycopg2 (from apache-airflow[postgres]) and httpx (Airflow's).
Nothing here imports airflow: the cluster runs in subprocesses with their own configuration.
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg2
from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parents[2]
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
EXECUTORS = ("LocalExecutor", "CeleryExecutor")
PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The cluster failed to start, a component died, or a wait timed out (the message has the logs)."""


# --------------------------------------------------------------------------------------------------
# small helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_reachable(host: str = PG_HOST, port: int = PG_PORT, user: str = PG_USER) -> str | None:
    """None when Postgres accepts a connection as `user`, else the reason it does not."""
    try:
        conn = psycopg2.connect(host=host, port=port, user=user, dbname="postgres", connect_timeout=3)
    except psycopg2.Error as exc:
        return f"PostgreSQL not reachable on {host}:{port} as {user}: {str(exc).strip()}"
    conn.close()
    return None


def _pg_admin(host: str, port: int, user: str) -> Any:
    conn = psycopg2.connect(host=host, port=port, user=user, dbname="postgres", connect_timeout=5)
    conn.autocommit = True
    return conn


def drop_database(name: str, host: str = PG_HOST, port: int = PG_PORT, user: str = PG_USER) -> None:
    """Terminate the database's connections, then drop it (no error if it does not exist)."""
    conn = _pg_admin(host, port, user)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


def e2e_databases(
    prefix: str = "envsync_e2e_", host: str = PG_HOST, port: int = PG_PORT, user: str = PG_USER
) -> list[str]:
    """Names of the databases this harness creates (e.g. to check none is left, or clean up by hand)."""
    conn = _pg_admin(host, port, user)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (prefix.replace("_", r"\_") + "%",)
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def _redis(*command: str | int, db: int = 0, host: str = REDIS_HOST, port: int = REDIS_PORT) -> Any:
    """Run one Redis command (after SELECT db) with a minimal RESP client; returns the decoded reply."""

    def encode(*parts: str | int) -> bytes:
        out = [f"*{len(parts)}\r\n".encode()]
        for part in parts:
            data = str(part).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(encode("SELECT", db) + encode(*command))
        reader = sock.makefile("rb")

        def read() -> Any:
            line = reader.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind == b"+":
                return rest.decode()
            if kind == b"-":
                raise ClusterError(f"redis error: {rest.decode()}")
            if kind == b":":
                return int(rest)
            if kind == b"$":
                size = int(rest)
                if size < 0:
                    return None
                data = reader.read(size + 2)[:-2]
                return data.decode(errors="replace")
            if kind == b"*":
                size = int(rest)
                return None if size < 0 else [read() for _ in range(size)]
            raise ClusterError(f"unexpected redis reply {line!r}")

        read()  # the SELECT's +OK
        return read()


def redis_reachable(host: str = REDIS_HOST, port: int = REDIS_PORT) -> str | None:
    try:
        reply = _redis("PING", host=host, port=port)
    except (OSError, ClusterError) as exc:
        return f"Redis not reachable on {host}:{port}: {exc}"
    return None if reply == "PONG" else f"Redis on {host}:{port} answered {reply!r} to PING"


def _redis_keys(pattern: str, db: int) -> list[str]:
    keys: list[str] = []
    cursor = "0"
    while True:
        cursor, batch = _redis("SCAN", cursor, "MATCH", pattern, "COUNT", 1000, db=db)
        keys.extend(batch)
        if cursor == "0":
            return keys


def _starttime(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), to tell it from a later one with the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _iso(value: dt.date | dt.datetime | str) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    return value.isoformat() if isinstance(value, dt.date) else value


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 200 * lines))
            text = handle.read().decode(errors="replace")
    except OSError as exc:
        return f"<cannot read: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------------
# the cluster


class AirflowCluster:
    """A real Airflow 3 cluster on a fresh Postgres database; see the module docstring.

    Args:
        extra_env: variables passed to every component and to the CLI (e.g. BIGQUERY_EMULATOR_HOST,
            STORAGE_EMULATOR_HOST, ENVSYNC_CONFIG); they override the harness's own settings.
        executor: "LocalExecutor" (default) or "CeleryExecutor" (broker: the local Redis, result
            backend: the same Postgres database; a `airflow celery worker` is started).
        triggerer: also start `airflow triggerer --skip-serve-logs`.
        dags_folder / plugins_folder: default <repo>/dags and <repo>/plugins.
        parallelism: [core] parallelism (also the Celery worker's concurrency).
        dags_paused_at_creation: [core] dags_are_paused_at_creation (Airflow's default: True).
        redis_db: Redis database index for the Celery broker; default: the highest empty one. Keys are
            prefixed with the run's name and deleted at stop() either way.
        home: the AIRFLOW_HOME to use (default: a new temp dir, deleted at stop() unless keep_home).
        keep_home: keep AIRFLOW_HOME (its logs) after stop(), e.g. to debug.
        python: the interpreter that runs `-m airflow` (default: this one, i.e. .venv's).
        startup_timeout: seconds to wait for the components to report healthy.
        stop_grace: seconds stop() lets SIGTERM work before SIGKILL, split between its two stages
            (executors first, then the other components).
    """

    def __init__(
        self,
        *,
        extra_env: Mapping[str, str] | None = None,
        executor: str = "LocalExecutor",
        triggerer: bool = False,
        dags_folder: Path | str | None = None,
        plugins_folder: Path | str | None = None,
        parallelism: int = 4,
        dags_paused_at_creation: bool = True,
        redis_db: int | None = None,
        home: Path | str | None = None,
        keep_home: bool = False,
        python: str | None = None,
        startup_timeout: float = 120.0,
        stop_grace: float = 12.0,
        pg_host: str = PG_HOST,
        pg_port: int = PG_PORT,
        pg_user: str = PG_USER,
    ) -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
        self.executor = executor
        self.triggerer = triggerer
        self.dags_folder = Path(dags_folder or REPO_ROOT / "dags")
        self.plugins_folder = Path(plugins_folder or REPO_ROOT / "plugins")
        self.parallelism = parallelism
        self.dags_paused_at_creation = dags_paused_at_creation
        self.extra_env = dict(extra_env or {})
        self.python = python or sys.executable
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.pg = {"host": pg_host, "port": pg_port, "user": pg_user}

        self.name = f"envsync_e2e_{secrets.token_hex(4)}"
        self.db_name = self.name
        self._own_home = home is None
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix=f"{self.name}_"))
        self.keep_home = keep_home
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.redis_db = redis_db
        self.redis_prefix = f"{self.name}:"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self._db_created = False
        self._stopped = False
        self._token: str | None = None
        self._http = httpx.Client(base_url=self.base_url, timeout=30.0)
        self.timings: dict[str, float] = {}
        self.killed: list[str] = []  # components that outlived stop_grace and got SIGKILL

    # ---------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> AirflowCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> AirflowCluster:
        """Create the database, migrate it, start the components and wait until they are healthy."""
        atexit.register(self.stop)
        started = time.monotonic()
        try:
            self._create_database()
            self.env = self._build_env()
            t0 = time.monotonic()
            result = self.airflow("db", "migrate", timeout=300)
            if result.returncode != 0:
                raise ClusterError(f"airflow db migrate failed ({result.returncode}):\n{result.stdout[-4000:]}")
            self.timings["db_migrate"] = time.monotonic() - t0
            t0 = time.monotonic()
            self._spawn("api-server", "api-server", "-H", "127.0.0.1", "-p", str(self.port))
            self._spawn("scheduler", "scheduler", "--skip-serve-logs")
            self._spawn("dag-processor", "dag-processor")
            if self.triggerer:
                self._spawn("triggerer", "triggerer", "--skip-serve-logs")
            if self.executor == "CeleryExecutor":
                self._spawn(
                    "celery-worker",
                    "celery",
                    "worker",
                    "--skip-serve-logs",
                    "--concurrency",
                    str(self.parallelism),
                    "--without-mingle",
                    "--without-gossip",
                )
            self.wait_healthy(self.startup_timeout)
            if self.executor == "CeleryExecutor":
                self.wait_for(
                    lambda: "ready." in self.log_path("celery-worker").read_text(errors="replace") or None,
                    self.startup_timeout,
                    "the Celery worker to be ready",
                )
            self.timings["components_healthy"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Terminate every component's process group (SIGTERM, then SIGKILL), then drop the database."""
        if self._stopped:
            return
        self._stopped = True
        t0 = time.monotonic()
        try:
            self._terminate_all()
        finally:
            self._http.close()
            try:
                if self._db_created:
                    drop_database(self.db_name, **self.pg)
            finally:
                if self.executor == "CeleryExecutor" and self.redis_db is not None:
                    self._clean_redis()
                if self._own_home and not self.keep_home:
                    shutil.rmtree(self.home, ignore_errors=True)
                atexit.unregister(self.stop)
        self.timings["stop"] = time.monotonic() - t0

    # ------------------------------------------------------------------------------ environment

    def _create_database(self) -> None:
        conn = _pg_admin(**self.pg)
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.db_name)))
        finally:
            conn.close()
        self._db_created = True

    def _pick_redis_db(self) -> int:
        databases = int(_redis("CONFIG", "GET", "databases")[1])
        for index in range(databases - 1, 0, -1):
            if _redis("DBSIZE", db=index) == 0:
                return index
        return databases - 1  # none empty: the key prefix still keeps this cluster's keys apart

    def _clean_redis(self) -> None:
        assert self.redis_db is not None
        try:
            keys = _redis_keys(f"{self.redis_prefix}*", self.redis_db)
            for start in range(0, len(keys), 500):
                _redis("DEL", *keys[start : start + 500], db=self.redis_db)
        except (OSError, ClusterError):
            pass

    def _build_env(self) -> dict[str, str]:
        # the pytest process's own Airflow settings (tests/conftest.py: SQLite home) must not leak in
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        conn = f"postgresql+psycopg2://{self.pg['user']}@{self.pg['host']}:{self.pg['port']}/{self.db_name}"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": conn,
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(self.dags_paused_at_creation),
                # one set of secrets for every component (else each would generate its own)
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
                "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                # loopback only; the task runners report to this api-server
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                # no log server is started (--skip-serve-logs), but never let one take a shared default port
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                # fast turn-around: DAGs appear and runs are picked up within seconds
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.executor == "CeleryExecutor":
            if self.redis_db is None:
                self.redis_db = self._pick_redis_db()
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}",
                    "AIRFLOW__CELERY__RESULT_BACKEND": (
                        f"db+postgresql://{self.pg['user']}@{self.pg['host']}:{self.pg['port']}/{self.db_name}"
                    ),
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.parallelism),
                    "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                    # every broker key of this run carries its name: stop() deletes exactly those
                    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.redis_prefix,
                    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
                }
            )
        env.update(self.extra_env)
        return env

    # ------------------------------------------------------------------------------- processes

    def log_path(self, component: str) -> Path:
        return self.home / f"{component}.log"

    def _spawn(self, component: str, *args: str) -> None:
        log = self.log_path(component).open("ab")
        try:
            self.processes[component] = subprocess.Popen(
                [self.python, "-m", "airflow", *args],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals it with its children
            )
        finally:
            log.close()

    def airflow(self, *args: str, timeout: float = 120.0, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run an `airflow` CLI command with the cluster's environment; stdout and stderr combined."""
        result = subprocess.run(
            [self.python, "-m", "airflow", *args],
            env=self.env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise ClusterError(f"`airflow {' '.join(args)}` failed ({result.returncode}):\n{result.stdout[-4000:]}")
        return result

    def check_alive(self) -> None:
        """Raise ClusterError (with the logs) if a component has exited."""
        dead = {name: proc.returncode for name, proc in self.processes.items() if proc.poll() is not None}
        if dead:
            raise ClusterError(f"component(s) exited: {dead}\n{self.tail_logs()}")

    # Shutdown, in two stages: the executors first (the scheduler and the Celery worker wait for their
    # task processes, and those report to the api-server), then the other components. In a stage:
    # 1. SIGTERM to each component's main process only: it stops its own children in order (signalling
    #    a LocalExecutor worker directly can kill it while it holds the task queue's lock, and then the
    #    scheduler waits forever);
    # 2. after up to 3 s: SIGTERM again to the main process (a scheduler with running tasks waits for
    #    them unless signalled twice; a Celery worker gets SIGQUIT, its cold shutdown), to its process
    #    group and to every process of its tree (task processes run in sessions of their own);
    # 3. SIGKILL to whatever is left at the stage's deadline (listed in .killed).
    _STOP_STAGES = (("scheduler", "celery-worker"), ("dag-processor", "triggerer", "api-server"))

    def _terminate_all(self) -> None:
        names = list(self.processes)
        stages = [[n for n in stage if n in names] for stage in self._STOP_STAGES]
        stages.append([n for n in names if not any(n in stage for stage in self._STOP_STAGES)])
        stages = [stage for stage in stages if stage]
        for stage in stages:
            self._terminate(stage, self.stop_grace / len(stages))
        # anything left anywhere (e.g. a child whose parent died before it could be linked)
        for pid in self._tree(None):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
                pass

    def _terminate(self, names: list[str], grace: float) -> None:
        mains = {name: self.processes[name].pid for name in names}
        groups = set(mains.values())
        seen: dict[int, str] = {}

        def kill(pid: int, sig: int, group: bool = False) -> None:
            try:
                (os.killpg if group else os.kill)(pid, sig)
            except ProcessLookupError:
                pass

        def alive() -> dict[int, str]:
            for name in names:
                self.processes[name].poll()  # reap our direct children
            tree = self._tree(groups)
            seen.update(tree)
            tree.update({pid: start for pid, start in seen.items() if _starttime(pid) == start})
            return tree

        def wait_until(deadline: float) -> bool:
            while alive():
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.1)
            return True

        started = time.monotonic()
        alive()  # remember the tree while parents still link it
        for pid in mains.values():
            kill(pid, signal.SIGTERM)
        if wait_until(started + min(3.0, grace / 2)):
            return
        for name, pid in mains.items():
            kill(pid, signal.SIGQUIT if name == "celery-worker" else signal.SIGTERM)
            kill(pid, signal.SIGTERM, group=True)
        for pid in alive():
            kill(pid, signal.SIGTERM)
        if wait_until(started + grace):
            return
        left = alive()
        self.killed.extend(
            name for name, pid in mains.items() if self.processes[name].poll() is None or self._tree({pid})
        )
        for pid in groups:
            kill(pid, signal.SIGKILL, group=True)
        for pid in left:
            kill(pid, signal.SIGKILL)
        wait_until(time.monotonic() + 5)

    def _tree(self, groups: set[int] | None) -> dict[int, str]:
        """Live (non-zombie) processes in the given process groups and their descendants, pid -> start
        time; with groups None: of every component, plus any process with this AIRFLOW_HOME in its
        environment (not reliable alone: setproctitle may overwrite the environ block)."""
        if groups is None:
            groups = {proc.pid for proc in self.processes.values()}
            marker: bytes | None = f"AIRFLOW_HOME={self.home}".encode()
        else:
            marker = None
        table: dict[int, tuple[int, int, str]] = {}  # pid -> (ppid, pgrp, starttime)
        ours: set[int] = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] in ("Z", "X") or pid == os.getpid():
                continue
            table[pid] = (int(fields[1]), int(fields[2]), fields[19])
            if table[pid][1] in groups:
                ours.add(pid)
            elif marker is not None:
                try:
                    if marker in (entry / "environ").read_bytes().split(b"\0"):
                        ours.add(pid)
                except OSError:
                    pass
        changed = True
        while changed:  # descendants that left the group (setsid), as long as their parent lives
            changed = False
            for pid, (ppid, _, _) in table.items():
                if pid not in ours and ppid in ours:
                    ours.add(pid)
                    changed = True
        return {pid: table[pid][2] for pid in sorted(ours)}

    def pids(self) -> list[int]:
        """Every live process of the cluster: the components and their descendants."""
        return list(self._tree(None))

    def listening_sockets(self) -> list[tuple[str, int, int]]:
        """(address, port, pid) of every TCP socket the cluster's processes listen on."""
        inodes: dict[str, int] = {}
        for pid in self.pids():
            try:
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes[target[8:-1]] = pid
            except OSError:
                continue
        found = []
        for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
            try:
                rows = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A: LISTEN
                    continue
                address_hex, port_hex = local.split(":")
                raw = bytes.fromhex(address_hex)
                # /proc/net/tcp* store each 32-bit word in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
                address = socket.inet_ntop(socket.AF_INET if width == 4 else socket.AF_INET6, words)
                found.append((address, int(port_hex, 16), inodes[inode]))
        return sorted(found)

    # ---------------------------------------------------------------------------------- waiting

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
        """Poll probe() until it returns something other than None/False, and return that.

        Raises ClusterError with the logs on timeout, or at once if a component exits; HTTP and OS
        errors of the probe count as "not yet"."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            self.check_alive()
            try:
                value = probe()
            except (httpx.HTTPError, OSError) as exc:
                value, last_error = None, exc
            if value is not None and value is not False:
                return value
            if time.monotonic() >= deadline:
                detail = f" (last error: {last_error!r})" if last_error else ""
                raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{detail}\n{self.tail_logs()}")
            time.sleep(interval)

    def health(self) -> dict[str, Any]:
        response = self._http.get("/api/v2/monitor/health", timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def wait_healthy(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the metadatabase, scheduler, dag-processor (and triggerer, if started) are healthy."""
        needed = ["metadatabase", "scheduler", "dag_processor"] + (["triggerer"] if self.triggerer else [])

        def probe() -> dict[str, Any] | None:
            health = self.health()
            ok = all((health.get(part) or {}).get("status") == "healthy" for part in needed)
            return health if ok else None

        return self.wait_for(probe, timeout, f"{', '.join(needed)} to be healthy")

    def wait_scheduler_heartbeats(self, count: int = 3, timeout: float = 60.0) -> None:
        """Wait until the scheduler has reported `count` new heartbeats (i.e. run that many loops since).

        To check that something does NOT happen (e.g. a paused DAG's runs stay queued) without a sleep."""
        seen: set[str] = set()

        def probe() -> bool:
            beat = (self.health().get("scheduler") or {}).get("latest_scheduler_heartbeat")
            if beat:
                seen.add(beat)
            return len(seen) > count  # the first one seen may predate the call

        self.wait_for(probe, timeout, f"{count} scheduler heartbeats", interval=0.3)

    # ------------------------------------------------------------------------------------ REST

    def password(self) -> str:
        data = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        return str(data["admin"])

    def token(self, refresh: bool = False) -> str:
        """A JWT for `admin` from POST /auth/token (cached)."""
        if self._token is None or refresh:
            response = self._http.post("/auth/token", json={"username": "admin", "password": self.password()})
            if response.status_code >= 400:
                raise ClusterError(f"POST /auth/token: HTTP {response.status_code}: {response.text}")
            self._token = str(response.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, *, expect: Iterable[int] = (200,), **kwargs: Any) -> Any:
        """An authenticated REST call; returns the decoded JSON, raises ClusterError on another status."""
        response = self.request(method, path, **kwargs)
        if response.status_code not in tuple(expect):
            raise ClusterError(f"{method} {path}: HTTP {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated REST call returning the raw response (re-authenticates once on 401)."""
        for attempt in (0, 1):
            headers = {"Authorization": f"Bearer {self.token(refresh=attempt == 1)}", **kwargs.pop("headers", {})}
            response = self._http.request(method, path, headers=headers, **kwargs)
            if response.status_code != 401:
                break
        return response

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"])

    def wait_for_dag(self, dag_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the dag-processor has serialized `dag_id`; returns its details.

        Fails early, with the import error, if its file cannot be imported."""

        def probe() -> dict[str, Any] | None:
            response = self.request("GET", f"/api/v2/dags/{dag_id}/details")
            if response.status_code == 200:
                return dict(response.json())
            errors = [e for e in self.import_errors() if f"{dag_id}" in (e.get("filename") or "")]
            if errors:
                raise ClusterError(f"import error for {dag_id}: {errors}")
            return None

        return self.wait_for(probe, timeout, f"DAG {dag_id} to be serialized")

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        return dict(self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused}))

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return self.set_paused(dag_id, False)

    def pause(self, dag_id: str) -> dict[str, Any]:
        return self.set_paused(dag_id, True)

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        logical_date: dt.datetime | str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """POST /api/v2/dags/<id>/dagRuns; returns the new run (its `dag_run_id`, `state`, ...).

        logical_date None makes a run without a logical date (as the UI's trigger does by default)."""
        body = {
            "logical_date": _iso(logical_date) if logical_date is not None else None,
            "conf": dict(conf or {}),
            **fields,
        }
        return dict(self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body))

    def dag_runs(self, dag_id: str, run_type: str | None = None) -> list[dict[str, Any]]:
        """The DAG's runs (oldest first by run_after), optionally only one run_type (e.g. "backfill")."""
        params: dict[str, Any] = {"limit": 100, "order_by": "run_after"}
        if run_type:
            params["run_type"] = run_type
        return list(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params=params)["dag_runs"])

    def wait_for_runs(
        self, dag_id: str, count: int, timeout: float = 120.0, run_type: str | None = None, fail_on_retry: bool = True
    ) -> list[dict[str, Any]]:
        """Wait until the DAG has at least `count` runs (of `run_type`) and all are success/failed.

        fail_on_retry: raise as soon as a task instance of a running run is up_for_retry, instead of
        waiting for its retry delay (minutes) to pass; the message has the task logs."""
        last: list[dict[str, Any]] = []

        def probe() -> list[dict[str, Any]] | None:
            nonlocal last
            last = self.dag_runs(dag_id, run_type)
            if len(last) >= count and all(run["state"] in TERMINAL_RUN_STATES for run in last):
                return last
            if fail_on_retry:
                for run in last:
                    if run["state"] != "running":
                        continue
                    retrying = [
                        ti["task_id"]
                        for ti in self.task_instances(dag_id, run["dag_run_id"])
                        if ti["state"] == "up_for_retry"
                    ]
                    if retrying:
                        raise ClusterError(f"{dag_id} {run['dag_run_id']}: {retrying} up_for_retry\n{self.tail_logs()}")
            return None

        try:
            return self.wait_for(probe, timeout, f"{count} finished run(s) of {dag_id}")
        except ClusterError as exc:
            states = [(run["dag_run_id"], run["state"]) for run in last]
            raise ClusterError(f"{exc}\nruns seen: {states}") from None

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(
            self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})[
                "task_instances"
            ]
        )

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value (deserialized), e.g. an operator's return value."""
        entry = self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"deserialize": True},
        )
        return entry["value"]

    def backfill(
        self,
        dag_id: str,
        from_date: dt.date | dt.datetime | str,
        to_date: dt.date | dt.datetime | str,
        conf: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 120.0,
    ) -> str:
        """Run the real `airflow backfill create` (it only creates the runs; the scheduler runs them).

        extra_args: more CLI arguments (e.g. ["--max-active-runs", "1"]). Returns the CLI output."""
        command = ["backfill", "create", "--dag-id", dag_id, "--from-date", _iso(from_date), "--to-date", _iso(to_date)]
        if conf is not None:
            command += ["--dag-run-conf", json.dumps(dict(conf))]
        return self.airflow(*command, *extra_args, timeout=timeout, check=True).stdout

    def query(self, statement: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run SQL on the cluster's metadata database (e.g. to look at celery_taskmeta); returns the rows."""
        conn = psycopg2.connect(dbname=self.db_name, connect_timeout=5, **self.pg)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statement, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def redis_keys(self) -> list[str]:
        """The Celery broker's keys of this cluster in Redis (all carry its prefix); [] without Celery."""
        return _redis_keys(f"{self.redis_prefix}*", self.redis_db) if self.redis_db is not None else []

    # ------------------------------------------------------------------------------------ logs

    def tail_logs(self, lines: int = 40, task_logs: int = 6) -> str:
        """The last lines of every component's log and of the newest task logs, for failure messages."""
        parts = []
        for component in self.processes:
            proc = self.processes[component]
            state = "running" if proc.poll() is None else f"exited {proc.returncode}"
            parts.append(
                f"===== {component} ({state}): {self.log_path(component)}\n{_tail(self.log_path(component), lines)}"
            )
        logs_dir = self.home / "logs"
        if logs_dir.is_dir():
            task_files = sorted(
                (p for p in logs_dir.rglob("*.log") if "dag_id=" in str(p)), key=lambda p: p.stat().st_mtime
            )[-task_logs:]
            for path in task_files:
                parts.append(f"===== task log {path.relative_to(logs_dir)}\n{_tail(path, lines)}")
        return "\n".join(parts)
