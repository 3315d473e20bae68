"""The devstack really starts, finds, and stops the emulators, and refuses taken ports."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from envsync.dev import devstack
from envsync.dev.devstack import DevstackError, Stack

REPO_ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """Another process's server, as far as the devstack can tell: a socket listening on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def _fake_venv(tmp_path: Path, bigquery: str, gcs: str) -> Path:
    """A venv whose emulator entry points are the given bash scripts.

    The BigQuery emulator is started as `python -m bqfidelity serve ...` and the GCS emulator as
    `python -m bqfidelity.gcs start ...`: the fake python runs the `bigquery` or `gcs` body for those,
    and is the real interpreter otherwise.
    """
    venv = tmp_path / "fake-venv"
    (venv / "bin").mkdir(parents=True)
    python = (
        f'if [ "$1 $2" = "-m bqfidelity.gcs" ]; then\n{gcs}\nfi\n'
        f'if [ "$1 $2" = "-m bqfidelity" ]; then\n{bigquery}\nfi\nexec {sys.executable} "$@"'
    )
    for name, body in (("python", python), ("local-bigquery", bigquery), ("gcp-storage-emulator", gcs)):
        script = venv / "bin" / name
        script.write_text(f"#!/usr/bin/env bash\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return venv


@pytest.mark.integration
def test_up_status_idempotent_down(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    devstack.up(stack)

    assert _get(f"{stack.bq_url}/bigquery/v2/projects/{stack.project}/datasets") == 200
    assert _get(f"{stack.gcs_url}/storage/v1/b") == 200
    state = devstack.status(stack)
    for service, port in (("bigquery", stack.bq_port), ("gcs", stack.gcs_port)):
        assert state[service]["running"] and state[service]["answering"], state
        assert state[service]["port"] == port
        assert psutil.pid_exists(state[service]["pid"])
    assert state["bigquery"]["grpc_port"] == stack.grpc_port
    assert stack.env() == {
        "BIGQUERY_EMULATOR_HOST": f"http://127.0.0.1:{stack.bq_port}",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{stack.gcs_port}",
    }

    started = time.monotonic()
    devstack.up(stack)
    assert time.monotonic() - started < 3, "a second up must not restart anything"
    again = devstack.status(stack)
    assert {s: again[s]["pid"] for s in again} == {s: state[s]["pid"] for s in state}

    devstack.down(stack)
    for service in ("bigquery", "gcs"):
        assert _gone(state[service]["pid"]), f"{service} still runs after down"
        assert not stack.pid_file(service).exists()
    for port in (stack.bq_port, stack.grpc_port, stack.gcs_port):
        assert _can_bind(port), f"port {port} still taken after down"
    after = devstack.status(stack)
    assert not any(info["running"] or info["answering"] for info in after.values()), after
    devstack.down(stack)  # idempotent


@pytest.mark.parametrize("field", ["bq_port", "grpc_port", "gcs_port"])
def test_port_taken_by_another_process_is_named(
    make_stack: Callable[..., Stack], listening_socket: socket.socket, field: str
) -> None:
    port = listening_socket.getsockname()[1]
    stack = make_stack(**{field: port})

    with pytest.raises(DevstackError) as excinfo:
        devstack.up(stack)

    message = str(excinfo.value)
    assert f"port {port}" in message
    assert f"pid {os.getpid()}" in message  # psutil names the owner: this test process
    assert not stack.pid_file("bigquery").exists() and not stack.pid_file("gcs").exists()


def test_server_exiting_at_start_reports_its_log_and_stops_the_other(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    venv = _fake_venv(
        tmp_path,
        bigquery="echo $$ > fake-bigquery.pid; exec sleep 60",
        # exit a moment after start, so the fake BigQuery has written its pid file
        gcs='sleep 1; echo "boom: cannot open storage base" >&2; exit 3',
    )
    stack = make_stack(venv=venv)

    with pytest.raises(DevstackError, match=r"(?s)gcs emulator exited with code 3.*boom: cannot open storage base"):
        devstack.up(stack, timeout=20)

    bigquery_pid = int((stack.root / "fake-bigquery.pid").read_text())
    assert _gone(bigquery_pid), "up must stop what it started when it fails"
    assert not stack.pid_file("bigquery").exists() and not stack.pid_file("gcs").exists()


def test_server_not_answering_times_out(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path, bigquery="echo listening soon; exec sleep 60", gcs="exec sleep 60")
    stack = make_stack(venv=venv)

    with pytest.raises(DevstackError, match=r"(?s)did not answer within 1s.*listening soon"):
        devstack.up(stack, timeout=1)
    assert devstack.status(stack)["bigquery"]["running"] is False


def test_missing_venv_says_how_to_fix(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    stack = make_stack(venv=tmp_path / "nowhere")
    with pytest.raises(DevstackError, match="make install"):
        devstack.up(stack)


def test_free_port_hands_out_distinct_bindable_ports() -> None:
    ports = [devstack.free_port() for _ in range(5)]
    assert len(set(ports)) == 5
    assert all(_can_bind(port) for port in ports)


def test_cli_prints_one_line_per_service_and_fails_cleanly(tmp_path: Path, listening_socket: socket.socket) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")}
    env.pop("ENVSYNC_EMULATOR_VENV", None)
    base = [sys.executable, "-m", "envsync.dev.devstack"]
    ports = ["--bq-port", str(devstack.free_port()), "--grpc-port", str(devstack.free_port())]

    status = subprocess.run(
        [*base, "status", "--root", str(tmp_path), *ports, "--gcs-port", str(devstack.free_port())],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    lines = status.stdout.strip().splitlines()
    assert len(lines) == 2 and all("stopped" in line for line in lines), status.stdout

    taken = listening_socket.getsockname()[1]
    up = subprocess.run(
        [*base, "up", "--root", str(tmp_path), *ports, "--gcs-port", str(taken)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert up.returncode == 1
    assert f"port {taken}" in up.stderr
    assert "Traceback" not in up.stderr


def test_a_stack_on_a_virtual_clock_runs_both_emulators_with_libfaketime_on_its_clock_file(tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    stack = Stack(root=tmp_path, clock_file=clock)
    for service in ("bigquery", "gcs"):
        _, env = devstack._command(stack, service)
        assert Path(env["LD_PRELOAD"]).is_file() and env["LD_PRELOAD"].endswith("libfaketime.so.1")
        assert env["FAKETIME"] == "+0"  # read once at start: libfaketime never re-reads a file
        assert "FAKETIME_TIMESTAMP_FILE" not in env and "FAKETIME_NO_CACHE" not in env
        assert env["FAKETIME_DONT_FAKE_MONOTONIC"] == "1"
    assert clock.read_text() == "+0\n"  # the real time until the clock is moved
    _, env = devstack._command(Stack(root=tmp_path), "bigquery")
    assert "LD_PRELOAD" not in env and "FAKETIME_TIMESTAMP_FILE" not in env


def test_a_stacks_latency_file_goes_to_its_bigquery_emulator_and_no_other_setting_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BQFIDELITY_LATENCY_FILE", str(tmp_path / "elsewhere"))  # not the stack's: ignored
    latency = tmp_path / "latency"
    _, env = devstack._command(Stack(root=tmp_path, latency_file=latency), "bigquery")
    assert env["BQFIDELITY_LATENCY_FILE"] == str(latency) and not latency.exists()  # missing: no latency
    _, env = devstack._command(Stack(root=tmp_path, latency_file=latency), "gcs")
    assert "BQFIDELITY_LATENCY_FILE" not in env
    _, env = devstack._command(Stack(root=tmp_path), "bigquery")
    assert "BQFIDELITY_LATENCY_FILE" not in env


def test_libfaketime_puts_a_process_on_the_offset_its_clock_file_held_when_it_started(tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    clock.write_text("+86400\n")
    code = (
        "import time, pathlib, sys\n"
        "a = time.time() - time.monotonic()\n"
        "pathlib.Path(sys.argv[1]).write_text('+172800\\n')\n"
        "b = time.time() - time.monotonic()\n"
        "print(round(b - a))"
    )
    env = {**os.environ, **devstack.clock_env(clock)}
    before = time.time() - time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code, str(clock)], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "0"  # a running process keeps its offset: it is moved by a restart
    env = {**os.environ, **devstack.clock_env(clock)}  # what the next start is given: the file's new offset
    now = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time() - time.monotonic())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert round(float(now) - before) == 172800


def test_a_clock_file_that_is_not_an_offset_is_refused_with_its_content(tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    clock.write_text("2026-12-07 10:00:00\n")
    with pytest.raises(devstack.DevstackError, match=r"holds '2026-12-07 10:00:00': expected an offset in seconds"):
        devstack.clock_env(clock)


def test_set_clock_replaces_the_file_whole_and_needs_a_stack_with_a_clock(tmp_path: Path) -> None:
    stack = Stack(root=tmp_path, clock_file=tmp_path / "clock")
    devstack.set_clock(stack, 3600)  # nothing runs: only the file
    assert stack.clock_file.read_text() == "+3600\n"
    assert [p.name for p in tmp_path.iterdir()] == ["clock"]  # no partial file left
    devstack.set_clock(stack, -60)
    assert devstack.clock_offset(stack.clock_file) == "-60"
    with pytest.raises(devstack.DevstackError, match="has no virtual clock"):
        devstack.set_clock(Stack(root=tmp_path), 3600)
