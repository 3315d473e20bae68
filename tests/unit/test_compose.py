"""Offline checks of the local Docker stack: docker-compose.yaml, Dockerfile, .dockerignore and
emulators/Dockerfile.

No Docker engine and no network: the files are parsed and cross-checked against each other, the
lock files, the bundle layout and the repo tree, so that a typo, a stale version or a leaked secret
fails here rather than in `docker compose up --build`. The Airflow image is built from the release
bundle (`make bundle`, envsync.deploy.bundle): the step of the Dockerfile that unpacks and verifies it
is run here on a real bundle, as the build would run it.

Required variables (compose refuses to start without them, `${VAR:?message}`): AIRFLOW_JWT_SECRET,
AIRFLOW_FERNET_KEY, AIRFLOW_SECRET_KEY (from `.env`) and ENVSYNC_BUNDLE (the bundle the Airflow image is
built from). Every other variable has a default.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from envsync.deploy import bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
AIRFLOW_DOCKERFILE = REPO_ROOT / "Dockerfile"
EMULATOR_DOCKERFILE = REPO_ROOT / "emulators" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
AIRFLOW_BASE_IMAGE = "apache/airflow:3.3.2-python3.11"
# Where the image unpacks the bundle, and what Airflow and envsync read there.
IMAGE_ROOT = PurePosixPath("/opt/envsync")
IMAGE_ENV = {
    "AIRFLOW__CORE__DAGS_FOLDER": str(IMAGE_ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(IMAGE_ROOT / "plugins"),
    "ENVSYNC_HOME": str(IMAGE_ROOT / "data" / "envsync"),
    "ENVSYNC_CONFIG": str(IMAGE_ROOT / "data" / "envsync" / "config" / "envsync.yaml"),
}
# The Airflow image's build arguments: the bundle's path in the build context, and the version label.
BUILD_ARGS = {"BUNDLE", "VERSION"}

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)
EMULATOR_SERVICES = ("bigquery-emulator", "gcs-emulator")
REQUIRED_SERVICES = ("postgres", "redis", *AIRFLOW_SERVICES, *EMULATOR_SERVICES)
# Variables compose fails without (the secrets from .env, and the bundle to build the Airflow image
# from); anything else needs a default.
REQUIRED_VARS = {"AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY", "AIRFLOW_SECRET_KEY", "ENVSYNC_BUNDLE"}
# Airflow settings whose values are secrets: each must be `${VAR:?...}` with VAR in REQUIRED_VARS.
SECRET_SETTINGS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY")
EXPECTED_PYTHON = "3.11"

# Keys of the Compose specification (a subset large enough for this stack): a misspelt key such as
# `depend_on` or `healtcheck` is silently meaningless to YAML, so it is caught here.
TOP_LEVEL_KEYS = {"version", "name", "include", "services", "networks", "volumes", "configs", "secrets"}
SERVICE_KEYS = {
    "build", "image", "command", "entrypoint", "environment", "env_file", "volumes", "ports", "expose",
    "depends_on", "healthcheck", "restart", "user", "working_dir", "networks", "labels", "container_name",
    "profiles", "deploy", "logging", "extra_hosts", "ulimits", "init", "stop_grace_period", "stop_signal",
    "tmpfs", "cap_add", "cap_drop", "privileged", "hostname", "shm_size", "secrets", "configs", "platform",
    "pull_policy", "read_only", "security_opt", "mem_limit", "cpus", "develop", "post_start", "pre_stop",
}  # fmt: skip
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART_POLICIES = {"no", "always", "on-failure", "unless-stopped"}

# `$$` (escaped), `${...}`, `$NAME`, or a lone `$` (an error for compose).
_DOLLAR = re.compile(r"\$(\$|\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)?")
_BRACED = re.compile(r"^\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?\}$", re.S)


# ---------------------------------------------------------------------------------------- helpers


def _is_extension(key: str) -> bool:
    return key.startswith("x-")


def _strings(node: Any) -> Iterator[str]:
    """Every string (keys and values) in a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _interpolations(text: str) -> Iterator[tuple[str, str | None, str]]:
    """(name, operator, argument) of each compose interpolation in one string; raises on bad syntax."""
    for match in _DOLLAR.finditer(text):
        token = match.group(1)
        if token == "$":
            continue  # `$$` is a literal dollar for the container
        if token is None:
            raise AssertionError(f"lone '$' in {text!r}: write '$$' for a literal dollar")
        if not token.startswith("{"):
            yield token, None, ""
            continue
        braced = _BRACED.match(token)
        assert braced, f"malformed interpolation ${token} in {text!r}"
        yield braced["name"], braced["op"], braced["arg"] or ""


def _substitute(text: str) -> str:
    """`text` with every interpolation replaced by its default (required ones by '<NAME>')."""

    def repl(match: re.Match[str]) -> str:
        token = match.group(1)
        if token == "$":
            return "$"
        braced = _BRACED.match(token or "")
        assert braced, f"cannot substitute {match.group(0)!r}"
        if braced["op"] in (":-", "-"):
            return braced["arg"]
        return f"<{braced['name']}>"

    return _DOLLAR.sub(repl, text)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def _build(service: dict[str, Any]) -> tuple[Path, Path] | None:
    """(context dir, Dockerfile) of a service's `build`, or None when it has none."""
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = (REPO_ROOT / build.get("context", ".")).resolve()
    return context, context / build.get("dockerfile", "Dockerfile")


def _split_volume(spec: str | dict[str, Any]) -> tuple[str | None, str, str]:
    """(source, target, type) of a short- or long-syntax service volume."""
    if isinstance(spec, dict):
        return spec.get("source"), spec["target"], spec.get("type", "volume")
    parts = spec.split(":")
    if len(parts) == 1:
        return None, parts[0], "volume"  # anonymous volume
    source, target = parts[0], parts[1]
    kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    return source, target, kind


def _published(spec: str | int | dict[str, Any]) -> tuple[str | None, str | None, str]:
    """(host_ip, published port, container port) of a short- or long-syntax port."""
    if isinstance(spec, dict):
        return spec.get("host_ip"), spec.get("published"), str(spec["target"])
    spec = str(spec).split("/")[0]  # drop /tcp, /udp
    if spec.startswith("["):  # [::1]:8080:8080
        host_ip, rest = spec[1:].split("]:", 1)
        published, target = rest.split(":")
        return host_ip, published, target
    parts = spec.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    return None, None, parts[0]


def _dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, `\\` continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            instr, _, args = full.partition(" ")
            instructions.append((instr.upper(), args.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def _stages(path: Path) -> list[tuple[str, str | None, list[tuple[str, str]]]]:
    """(base image, stage name or None, instructions after its FROM) of each build stage of a Dockerfile."""
    stages: list[tuple[str, str | None, list[tuple[str, str]]]] = []
    for instr, args in _dockerfile(path):
        if instr == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) == 1 or name, f"{path}: unexpected FROM {args!r}"
            stages.append((words[0], name, []))
        else:
            assert stages, f"{path}: {instr} before the first FROM"
            stages[-1][2].append((instr, args))
    return stages


def _copy_words(path: Path, instr: str, args: str) -> tuple[list[str], str, dict[str, str]]:
    """(sources, destination, flags) of one COPY/ADD."""
    words = shlex.split(args)
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    words = [w for w in words if not w.startswith("--")]
    assert len(words) >= 2, f"{path}: {instr} {args!r} needs a source and a destination"
    return words[:-1], words[-1], flags


def _copies(path: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY/ADD of a Dockerfile from its build context (flags such as
    --chown dropped; copies from another stage, `--from=`, are not from the context)."""
    result = []
    for instr, args in _dockerfile(path):
        if instr in ("COPY", "ADD"):
            sources, dest, flags = _copy_words(path, instr, args)
            if "from" not in flags:
                result.append((sources, dest))
    return result


def _stage_copies(instructions: list[tuple[str, str]]) -> list[tuple[str, list[str], str]]:
    """(stage, sources, destination) of each `COPY --from=<stage>` of one stage."""
    result = []
    for instr, args in instructions:
        if instr == "COPY":
            sources, dest, flags = _copy_words(AIRFLOW_DOCKERFILE, instr, args)
            if "from" in flags:
                result.append((flags["from"], sources, dest))
    return result


def _arg_name(word: str) -> str | None:
    """NAME when a Dockerfile word is exactly `${NAME}` or `$NAME`, else None."""
    match = re.fullmatch(r"\$(?:\{(\w+)\}|(\w+))", word)
    return (match[1] or match[2]) if match else None


def _declared_args(instructions: list[tuple[str, str]]) -> dict[str, str | None]:
    """name -> default (None without one) of the ARGs of one stage."""
    args = {}
    for instr, text in instructions:
        if instr == "ARG":
            name, eq, default = text.partition("=")
            args[name.strip()] = default.strip() if eq else None
    return args


def _image_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The variables the ENV instructions of one stage set (`ENV A=1 B=2` form)."""
    env = {}
    for instr, text in instructions:
        if instr == "ENV":
            for word in shlex.split(text):
                key, eq, value = word.partition("=")
                assert eq, f"ENV {text!r}: write KEY=value"
                env[key] = value
    return env


def _airflow_stages() -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    """(instructions of the stage that unpacks the bundle, instructions of the final image, that stage's
    name) of the Airflow Dockerfile."""
    stages = _stages(AIRFLOW_DOCKERFILE)
    assert len(stages) == 2, f"expected a bundle stage and the image, got {[(b, n) for b, n, _ in stages]}"
    (_, name, unpack), (_, final_name, final) = stages
    assert name and final_name is None, "the first stage is named (COPY --from), the image is not"
    return unpack, final, name


def _bundle_copy() -> tuple[str, str]:
    """(build argument, destination) of the one COPY from the build context: the bundle."""
    copies = _copies(AIRFLOW_DOCKERFILE)
    assert len(copies) == 1 and len(copies[0][0]) == 1, f"the image must copy exactly one file, the bundle: {copies}"
    (source,), dest = copies[0]
    name = _arg_name(source)
    assert name == "BUNDLE", f"the image copies {source!r}, not the bundle the build names (${{BUNDLE}})"
    return name, dest


def _unpack_run() -> str:
    """The RUN of the bundle stage that extracts, verifies and completes the bundle."""
    unpack, _final, _name = _airflow_stages()
    _arg, tarball = _bundle_copy()
    runs = [args for instr, args in unpack if instr == "RUN" and tarball in args]
    assert len(runs) == 1, f"expected one RUN using {tarball}: {runs}"
    return runs[0]


def _verification_command() -> list[str]:
    """The command line (`python -c <code> <root>`) the image verifies the bundle with."""
    words = shlex.split(_unpack_run())
    starts = [i for i, w in enumerate(words) if w in ("python", "python3") and words[i + 1 : i + 2] == ["-c"]]
    assert len(starts) == 1, "expected one `python -c` in the unpacking step"
    start = starts[0]
    end = words.index("&&", start) if "&&" in words[start:] else len(words)
    command = words[start:end]
    assert bundle.MANIFEST in command[2], "the python -c does not read MANIFEST.json"
    return command


def _lock_pins(path: Path) -> dict[str, str]:
    """name -> version of the `name==version` lines of a (pip-compile/uv) lock or requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def _lock_python(path: Path) -> str:
    match = re.search(r"--python-version[ =](\d+\.\d+)", path.read_text())
    assert match, f"{path}: no `--python-version` in the lock header"
    return match[1]


def _command_args(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    return shlex.split(command) if isinstance(command, str) else list(command or [])


def _flag(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    doc = yaml.safe_load(compose_text)
    assert isinstance(doc, dict), "docker-compose.yaml is not a mapping"
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict) and services, "no `services` mapping"
    return services


@pytest.fixture(scope="module")
def common_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    return _env(services["airflow-scheduler"])


# ---------------------------------------------------------------------------- 1. structure


def test_compose_parses_and_defines_the_stack(compose: dict[str, Any], services: dict[str, Any]) -> None:
    missing = [name for name in REQUIRED_SERVICES if name not in services]
    assert not missing, f"services missing from docker-compose.yaml: {missing}"
    unknown_top = {k for k in compose if k not in TOP_LEVEL_KEYS and not _is_extension(k)}
    assert not unknown_top, f"unknown top-level keys: {unknown_top}"


@pytest.mark.parametrize("name", REQUIRED_SERVICES)
def test_service_keys_are_compose_keys(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert isinstance(service, dict), f"{name}: not a mapping"
    unknown = {k for k in service if k not in SERVICE_KEYS and not _is_extension(k)}
    assert not unknown, f"{name}: unknown keys {unknown} (typo?)"
    assert "image" in service or "build" in service, f"{name}: neither image nor build"
    if "restart" in service:
        assert service["restart"] in RESTART_POLICIES or str(service["restart"]).startswith("on-failure:")
    if "healthcheck" in service:
        check = service["healthcheck"]
        assert set(check) <= HEALTHCHECK_KEYS, f"{name}: unknown healthcheck keys {set(check) - HEALTHCHECK_KEYS}"
        test = check["test"]
        assert isinstance(test, str) or (test and test[0] in ("CMD", "CMD-SHELL", "NONE")), (
            f"{name}: healthcheck test must start with CMD, CMD-SHELL or NONE: {test}"
        )
    # Compose wants strings in exec-form lists; an unquoted YAML number/bool would be a type error.
    for key in ("command", "entrypoint"):
        if isinstance(service.get(key), list):
            bad = [a for a in service[key] if not isinstance(a, str)]
            assert not bad, f"{name}: non-string {key} items {bad} (quote them)"
    if isinstance((service.get("healthcheck") or {}).get("test"), list):
        bad = [a for a in service["healthcheck"]["test"] if not isinstance(a, str)]
        assert not bad, f"{name}: non-string healthcheck.test items {bad}"
    bad_env = {k: v for k, v in _env(service).items() if not isinstance(v, str | None)}
    assert not bad_env, f"{name}: environment values that are not strings (quote them): {bad_env}"


# ---------------------------------------------------------------------------- 2. references


def test_build_contexts_and_dockerfiles_exist(services: dict[str, Any]) -> None:
    dockerfiles = set()
    for name, service in services.items():
        build = _build(service)
        if build is None:
            continue
        context, dockerfile = build
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        assert dockerfile.is_file(), f"{name}: Dockerfile {dockerfile} does not exist"
        assert context == REPO_ROOT or REPO_ROOT in context.parents, f"{name}: build context outside the repo"
        dockerfiles.add(dockerfile)
    assert dockerfiles == {AIRFLOW_DOCKERFILE, EMULATOR_DOCKERFILE}, dockerfiles


@pytest.mark.parametrize(
    ("dockerfile", "context"), [(AIRFLOW_DOCKERFILE, REPO_ROOT), (EMULATOR_DOCKERFILE, REPO_ROOT / "emulators")]
)
def test_every_copy_source_exists_in_its_build_context(
    dockerfile: Path, context: Path, services: dict[str, Any]
) -> None:
    copies = _copies(dockerfile)
    assert copies, f"{dockerfile}: no COPY"
    for sources, _dest in copies:
        for source in sources:
            assert not source.startswith(("/", "..")), f"{dockerfile}: COPY {source} escapes the context"
            arg = _arg_name(source)
            if arg is None:
                assert (context / source).exists(), f"{dockerfile}: COPY source {source} not in {context}"
                continue
            # A file the build names (the bundle: built by `make bundle`, not in the tree): the stage
            # declares the ARG, and compose passes it to every service built from this Dockerfile.
            declared = []  # the ARGs in scope at this COPY: those of its stage declared before it
            for instr, args in _dockerfile(dockerfile):
                if instr == "FROM":
                    declared = []
                elif instr == "ARG":
                    declared.append(args.partition("=")[0].strip())
                elif instr == "COPY" and source in _copy_words(dockerfile, instr, args)[0]:
                    break
            assert arg in declared, f"{dockerfile}: COPY {source} without ARG {arg} before it in its stage"
            for name, service in services.items():
                if _build(service) == (context, dockerfile):
                    assert arg in (service["build"].get("args") or {}), f"{name}: build.args does not pass {arg}"


def test_volumes_bind_sources_exist_and_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in services.items():
        for spec in service.get("volumes") or []:
            source, target, kind = _split_volume(spec)
            assert target.startswith("/"), f"{name}: volume target {target!r} is not absolute"
            if kind == "bind":
                assert source
                if not source.startswith(("/", "~")):
                    path = (REPO_ROOT / source).resolve()
                    assert path.exists(), f"{name}: bind-mount source {source} does not exist"
            elif source:
                used.add(source)
                assert source in declared, f"{name}: named volume {source!r} not declared under top-level volumes"
    assert not declared - used, f"declared but unused volumes: {declared - used}"


def test_depends_on_targets_exist_with_valid_conditions(services: dict[str, Any]) -> None:
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {dep: {"condition": "service_started"} for dep in deps}
        for dep, spec in deps.items():
            assert dep in services, f"{name}: depends_on {dep!r}, which is not a service"
            assert dep != name, f"{name}: depends on itself"
            condition = (spec or {}).get("condition", "service_started")
            assert condition in DEPENDS_ON_CONDITIONS, f"{name}: bad condition {condition!r} on {dep}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name}: waits for {dep} to be healthy, it has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} must run once (no restart) to complete"


def test_depends_on_has_no_cycle(services: dict[str, Any]) -> None:
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "visiting", f"depends_on cycle: {' -> '.join([*path, name])}"
        state[name] = "visiting"
        for dep in services[name].get("depends_on") or {}:
            if dep in services:  # an unknown target is reported by the test above
                visit(dep, [*path, name])
        state[name] = "done"

    for name in services:
        visit(name, [])


def test_every_interpolation_has_a_default_or_is_required(compose: dict[str, Any]) -> None:
    required: dict[str, str] = {}
    for text in set(_strings(compose)):
        for var, op, arg in _interpolations(text):
            assert op in (":-", ":?"), f"${{{var}}} in {text!r} has neither a default (:-) nor a required marker (:?)"
            if op == ":?":
                assert arg.strip(), f"${{{var}:?}} needs a message telling the user what to set"
                required[var] = arg
    assert set(required) == REQUIRED_VARS, f"required variables changed: {sorted(required)}"


# ---------------------------------------------------------------------------- 3. versions and images


def test_airflow_image_matches_the_pinned_airflow_and_python() -> None:
    # Both stages start from the same image: the bundle is verified with the image's own python.
    froms = {base for base, _name, _instrs in _stages(AIRFLOW_DOCKERFILE)}
    assert froms == {AIRFLOW_BASE_IMAGE}, froms
    match = re.fullmatch(r"apache/airflow:(?P<airflow>\d+\.\d+\.\d+)-python(?P<python>\d+\.\d+)", AIRFLOW_BASE_IMAGE)
    assert match, f"unexpected base image {AIRFLOW_BASE_IMAGE!r}"
    pinned_in = _lock_pins(REPO_ROOT / "requirements.in").get("apache-airflow")
    pinned_txt = _lock_pins(REPO_ROOT / "requirements.txt").get("apache-airflow")
    assert match["airflow"] == pinned_in == pinned_txt, (match["airflow"], pinned_in, pinned_txt)
    assert _lock_pins(REPO_ROOT / "requirements.txt").get("apache-airflow-core") == match["airflow"]
    assert match["python"] == EXPECTED_PYTHON == _lock_python(REPO_ROOT / "requirements.txt")


def test_airflow_image_installs_the_hashed_lock() -> None:
    """The image installs the bundle's own lock, as user airflow, before it copies the rest of the
    bundle: the lock is copied alone from the bundle stage so that pip's layer stays cached while only
    code changes."""
    _unpack, final, stage = _airflow_stages()
    lock = str(IMAGE_ROOT / bundle.LOCK_FILE)
    copies = _stage_copies(final)
    assert [(stage, [lock], lock), (stage, [f"{IMAGE_ROOT}/"], f"{IMAGE_ROOT}/")] == copies, copies
    install = f"pip install --no-cache-dir --require-hashes -r {lock}"
    steps = [(instr, args) for instr, args in final if instr in ("USER", "RUN", "COPY")]
    at = next((i for i, (instr, args) in enumerate(steps) if instr == "RUN" and args == install), None)
    assert at is not None, f"no `RUN {install}` in the image: {steps}"
    users = [args for instr, args in steps[:at] if instr == "USER"]
    assert users and users[-1] == "airflow", f"pip must run as user airflow, not {users[-1:] or ['root']}"
    copied = [args for instr, args in steps if instr == "COPY"]
    assert lock in copied[0] and f"{IMAGE_ROOT}/ " in copied[1], copied
    assert steps.index(("COPY", copied[0])) < at < steps.index(("COPY", copied[1])), steps
    # The bundle ships the lock at its root, and the lock in the tree is the one that pins Airflow.
    assert bundle.layout("requirements.txt") == bundle.LOCK_FILE


def test_emulator_image_installs_emulators_requirements(services: dict[str, Any]) -> None:
    instructions = _dockerfile(EMULATOR_DOCKERFILE)
    froms = [args for instr, args in instructions if instr == "FROM"]
    assert len(froms) == 1, froms
    match = re.fullmatch(r"python:(\d+\.\d+)(?:[.-].*)?", froms[0])
    assert match, f"unexpected emulator base image {froms[0]!r}"
    lock = REPO_ROOT / "emulators" / "requirements.txt"
    assert match[1] == _lock_python(lock), f"emulator image is Python {match[1]}, its lock {_lock_python(lock)}"
    dests = [dest for sources, dest in _copies(EMULATOR_DOCKERFILE) if sources == ["requirements.txt"]]
    assert len(dests) == 1, "emulators/Dockerfile must COPY requirements.txt (emulators/requirements.txt)"
    runs = [args for instr, args in instructions if instr == "RUN"]
    assert any(
        "pip install" in run and "--require-hashes" in run and re.search(rf"-r\s+{re.escape(dests[0])}(\s|$)", run)
        for run in runs
    ), f"no `pip install --require-hashes -r {dests[0]}` in {runs}"
    pins = _lock_pins(lock)
    # The console scripts the compose services run, and the DuckDB extensions baked into the image.
    # The BigQuery emulator is local-bigquery run through the fidelity layer (python -m bqfidelity),
    # which the image must copy in and put on PYTHONPATH.
    for name in EMULATOR_SERVICES:
        args = _command_args(services[name])
        if args[:3] == ["python", "-m", "bqfidelity"]:
            assert "local-bigquery" in pins, "emulators/requirements.txt does not install local-bigquery"
            copied = {dest for sources, dest in _copies(EMULATOR_DOCKERFILE) if sources == ["bqfidelity"]}
            assert copied, "emulators/Dockerfile must COPY bqfidelity (the fidelity layer)"
            env = " ".join(args for instr, args in instructions if instr == "ENV")
            assert any(f"PYTHONPATH={Path(dest).parent}" in env for dest in copied), env
            continue
        program = args[0]
        assert program in pins, f"{name} runs {program!r}, which emulators/requirements.txt does not install"
    for ext in re.findall(r"'(\w+)'", next(r for r in runs if "import_extension" in r)):
        assert f"duckdb-extension-{ext}" in pins, f"extension {ext} is not in emulators/requirements.txt"
    assert pins.get("duckdb-extensions") == pins.get("duckdb"), "duckdb-extensions must match duckdb"


def test_airflow_services_use_the_common_anchor_and_image(compose_text: str, services: dict[str, Any]) -> None:
    root = yaml.compose(compose_text, Loader=yaml.SafeLoader)
    top = {key.value: value for key, value in root.value}
    common_node = top["x-airflow-common"]
    service_nodes = {key.value: value for key, value in top["services"].value}
    common = yaml.safe_load(compose_text)["x-airflow-common"]
    for name in AIRFLOW_SERVICES:
        merged = [v for k, v in service_nodes[name].value if k.value == "<<"]
        assert any(v is common_node for v in merged), f"{name}: does not merge <<: *airflow-common"
        service = services[name]
        assert _build(service) == (REPO_ROOT, AIRFLOW_DOCKERFILE), f"{name}: not built from Dockerfile"
        assert service["image"] == common["image"], f"{name}: image {service['image']!r}"
        assert set(common["environment"].items()) <= set(_env(service).items()), f"{name}: lost the common env"
        for dep in ("postgres", "redis", *EMULATOR_SERVICES):
            assert dep in service["depends_on"], f"{name}: does not wait for {dep}"
    for name in EMULATOR_SERVICES:
        assert _build(services[name]) == (REPO_ROOT / "emulators", EMULATOR_DOCKERFILE), name
    # The build passes the bundle and the version; the image is tagged with that version.
    args = common["build"]["args"]
    assert set(args) == BUILD_ARGS == set(_declared_args(_dockerfile(AIRFLOW_DOCKERFILE))), args
    bundle_var = list(_interpolations(args["BUNDLE"]))
    assert [(var, op) for var, op, _msg in bundle_var] == [("ENVSYNC_BUNDLE", ":?")], args["BUNDLE"]
    assert "make bundle" in bundle_var[0][2], "the message must say how to get a bundle"
    assert f"dist/{bundle.NAME}-<version>.tar.gz" in bundle_var[0][2], bundle_var[0][2]
    assert common["image"].endswith(f":{args['VERSION']}"), (common["image"], args["VERSION"])
    # A Docker tag: the default version must be one (no `+`, which bundle versions may hold).
    tag = _substitute(common["image"]).rsplit(":", 1)[-1]
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag), f"default image tag {tag!r}"


# ---------------------------------------------------------------------------- 4. executor, DBs, secrets


def test_celery_executor_with_redis_broker_and_postgres_metadata(
    services: dict[str, Any], common_env: dict[str, str]
) -> None:
    assert common_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    pg = _env(services["postgres"])
    assert str(services["postgres"]["image"]).startswith("postgres:")
    assert str(services["redis"]["image"]).startswith("redis:")

    broker = urlsplit(common_env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme in ("redis", "rediss"), broker
    assert broker.hostname == "redis" and (broker.port or 6379) == 6379, broker

    for key, schemes in (
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", {"postgresql", "postgresql+psycopg2", "postgresql+psycopg"}),
        ("AIRFLOW__CELERY__RESULT_BACKEND", {"db+postgresql", "db+postgresql+psycopg2", "db+postgresql+psycopg"}),
    ):
        url = urlsplit(common_env[key])
        assert url.scheme in schemes, f"{key}: scheme {url.scheme!r}"
        assert url.hostname == "postgres" and (url.port or 5432) == 5432, f"{key}: not the compose postgres"
        assert url.username == pg["POSTGRES_USER"] and url.password == pg["POSTGRES_PASSWORD"], key
        assert url.path.lstrip("/") == pg["POSTGRES_DB"], key
    # The lock installs the driver the URL names.
    assert "psycopg2-binary" in _lock_pins(REPO_ROOT / "requirements.txt")


def test_components_find_each_other(services: dict[str, Any], common_env: dict[str, str]) -> None:
    execution_api = urlsplit(common_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution_api.hostname == "airflow-apiserver" and execution_api.port == 8080
    assert execution_api.path.rstrip("/") == "/execution"
    assert _command_args(services["airflow-apiserver"]) == ["api-server"]
    assert any(_published(p)[2] == "8080" for p in services["airflow-apiserver"]["ports"])

    bq_args = _command_args(services["bigquery-emulator"])
    gcs_args = _command_args(services["gcs-emulator"])
    bq = urlsplit(common_env["BIGQUERY_EMULATOR_HOST"])
    gcs = urlsplit(common_env["STORAGE_EMULATOR_HOST"])
    assert (bq.hostname, str(bq.port)) == ("bigquery-emulator", _flag(bq_args, "--port"))
    assert (gcs.hostname, str(gcs.port)) == ("gcs-emulator", _flag(gcs_args, "--port"))
    assert _env(services["bigquery-emulator"])["STORAGE_EMULATOR_HOST"] == common_env["STORAGE_EMULATOR_HOST"]
    for args in (bq_args, gcs_args):
        assert _flag(args, "--host") == "0.0.0.0", "an emulator on loopback is unreachable from other containers"

    # Emulator data lives on the named volumes.
    bq_targets = {_split_volume(v)[1] for v in services["bigquery-emulator"]["volumes"]}
    gcs_targets = {_split_volume(v)[1] for v in services["gcs-emulator"]["volumes"]}
    assert _flag(bq_args, "--data-dir") in bq_targets
    assert _env(services["gcs-emulator"])["STORAGE_BASE"] in gcs_targets

    # The emulator serves the project config/envsync.yaml names.
    config = yaml.safe_load((REPO_ROOT / "config" / "envsync.yaml").read_text())
    assert _substitute(_flag(bq_args, "--project")) == config["project"]

    # ENVSYNC_CONFIG is the config the image makes from the bundle's template; the init service imports
    # envsync from the image's plugins folder.
    image_env = _image_env(_airflow_stages()[1])
    assert common_env["ENVSYNC_CONFIG"] == image_env["ENVSYNC_CONFIG"] == IMAGE_ENV["ENVSYNC_CONFIG"]
    assert _env(services["airflow-init"])["PYTHONPATH"] == image_env["AIRFLOW__CORE__PLUGINS_FOLDER"]


def test_secrets_come_from_the_environment(common_env: dict[str, str]) -> None:
    for key in SECRET_SETTINGS:
        match = re.fullmatch(r"\$\{(?P<var>[A-Za-z_][A-Za-z0-9_]*):\?.+\}", common_env.get(key, ""))
        assert match, f"{key} must be `${{VAR:?message}}`, got {common_env.get(key)!r}"
        assert match["var"] in REQUIRED_VARS
    variables = {re.search(r"\{(\w+)", common_env[key])[1] for key in SECRET_SETTINGS}
    assert len(variables) == len(SECRET_SETTINGS), "each secret needs its own variable"


def _looks_like_a_key(token: str) -> bool:
    if re.fullmatch(r"[0-9a-fA-F]{32,}", token) and re.search(r"\d", token):
        return True  # hex digest/key
    return bool(re.search(r"[A-Z]", token) and re.search(r"[a-z]", token) and re.search(r"\d", token))


def test_no_literal_key_anywhere_in_the_compose_file(compose: dict[str, Any], compose_text: str) -> None:
    # Every string in the parsed document (values, commands, healthchecks), after default substitution.
    suspects = []
    for text in set(_strings(compose)):
        for token in re.findall(r"[A-Za-z0-9+/_=-]{32,}", _substitute(text)):
            if _looks_like_a_key(token):
                suspects.append(token)
    # And the comments (a key pasted into an example line).
    for line in compose_text.splitlines():
        if "#" in line:
            comment = line.split("#", 1)[1]
            suspects += [t for t in re.findall(r"[A-Za-z0-9+/_=-]{32,}", comment) if _looks_like_a_key(t)]
    assert not suspects, f"values that look like literal keys: {suspects}"


def test_the_key_detector_catches_real_keys() -> None:
    """The detector above is not vacuous: a Fernet key, a token_urlsafe(32) and a hex key are caught."""
    fernet = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="
    urlsafe = "Jx3kP0aQ_rV9m2LbT7yWc1nZs8dEfGh4uIoK5lMq6Nw"
    hex_key = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    for key in (fernet, urlsafe, hex_key):
        tokens = re.findall(r"[A-Za-z0-9+/_=-]{32,}", f"AIRFLOW__CORE__FERNET_KEY: {key}")
        assert any(_looks_like_a_key(t) for t in tokens), key
    for harmless in (
        "/opt/envsync/data/envsync/config/envsync.yaml",
        "airflow.providers.celery.executors.celery_executor.app",
    ):
        assert not any(_looks_like_a_key(t) for t in re.findall(r"[A-Za-z0-9+/_=-]{32,}", harmless))


def test_dot_env_is_git_ignored() -> None:
    git = shutil.which("git")
    if git is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        [git, "check-ignore", "-q", "--no-index", ".env"], cwd=REPO_ROOT, check=False, capture_output=True
    )
    assert result.returncode == 0, ".env is not git-ignored: `git add .` would commit the secrets"


# ---------------------------------------------------------------------------- 5. ports


def test_published_ports_bind_to_loopback(services: dict[str, Any]) -> None:
    published = []
    for name, service in services.items():
        for spec in service.get("ports") or []:
            host_ip, port, _target = _published(spec)
            assert host_ip in ("127.0.0.1", "::1"), f"{name}: port {spec!r} is published on all interfaces"
            published.append(port)
    assert len(published) == len(set(published)), f"a host port is published twice: {published}"
    assert set(published) == {"8080", "9050", "9060", "9023"}, published
    for name in ("postgres", "redis"):
        assert not services[name].get("ports"), f"{name} must stay inside the compose network"


# ---------------------------------------------------------------------------- 6. image content


def test_airflow_image_copies_one_bundle_and_points_airflow_and_envsync_at_it() -> None:
    """The image holds the bundle and nothing of the working tree: one COPY from the build context (the
    BUNDLE argument), extracted to /opt/envsync and verified in the bundle stage, copied whole into the
    image, where Airflow's DAGs and plugins folders and envsync's home and config point."""
    unpack, final, stage = _airflow_stages()
    _arg, tarball = _bundle_copy()
    run = _unpack_run()
    assert f"tar -xzf {tarball} -C {IMAGE_ROOT}" in run, run
    # Verified right after extraction, before anything reads or adds a file.
    words = shlex.split(run)
    command = _verification_command()
    after = words[words.index(command[0]) + len(command) :]
    assert command[3:] == [str(IMAGE_ROOT)] and after[:1] == ["&&"], command
    assert words.index("tar") < words.index(command[0]), "verify after extracting"
    assert [(stage, [f"{IMAGE_ROOT}/"], f"{IMAGE_ROOT}/")] == [c for c in _stage_copies(final) if c[2].endswith("/")]
    assert _image_env(final) == IMAGE_ENV
    assert _image_env(unpack) == {}, "the unpacking stage sets nothing the image would not have"
    # Those paths are where the bundle puts the DAGs, the package, the SQL and the config template.
    home = PurePosixPath(IMAGE_ENV["ENVSYNC_HOME"]).relative_to(IMAGE_ROOT)
    assert bundle.layout("dags/prod_to_dev_sync.py") == "dags/prod_to_dev_sync.py"
    assert bundle.layout("plugins/envsync/core/paths.py") == "plugins/envsync/core/paths.py"
    assert bundle.layout("sql/sync/x.sql") == f"{home}/sql/sync/x.sql"
    assert bundle.CONFIG_TEMPLATE == f"{home}/config/envsync.yaml.template"
    config = PurePosixPath(IMAGE_ENV["ENVSYNC_CONFIG"])
    assert f"cp {IMAGE_ROOT / bundle.CONFIG_TEMPLATE} {config}" in run, "the image's config is the template's copy"
    # The version label.
    labels = " ".join(args for instr, args in final if instr == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels, labels
    assert "VERSION" in _declared_args(final), "ARG VERSION must be declared in the image's stage"


def test_dockerignore_lets_in_the_bundle_and_nothing_else() -> None:
    """The build context is the bundle alone (Docker's .dockerignore rules: the last matching line wins,
    a line matches a path or one of its parent folders, `!` lets a path back in)."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            pattern = line.lstrip("!").strip("/")
            regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            rules.append((re.compile(regex), negated))

    def sent(path: str) -> bool:
        parts = path.split("/")
        excluded = False
        for regex, negated in rules:
            if any(regex.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
                excluded = not negated
        return not excluded

    example = f"dist/{bundle.NAME}-1.2.0.tar.gz"
    assert sent(example), f"{example} is not in the build context"
    for path in (".env", ".git/config", "dags/prod_to_dev_sync.py", "plugins/envsync/core/paths.py", "sql/x.sql",
                 "config/envsync.yaml", "requirements.txt", "tests/unit/test_compose.py", ".venv/bin/python",
                 "dist/notes.txt"):  # fmt: skip
        assert not sent(path), f"{path} goes into the build context: the image must come from the bundle alone"


# ---------------------------------------------------------------------------- 6b. the bundle step, run


def _git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "envsync tests",
        "GIT_AUTHOR_EMAIL": "tests@envsync.invalid",
        "GIT_COMMITTER_NAME": "envsync tests",
        "GIT_COMMITTER_EMAIL": "tests@envsync.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=True).stdout


@pytest.fixture(scope="module")
def real_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of this tree, as `make bundle ALLOW_DIRTY=1` builds it. When the tree does not track
    the deploy package yet, the shipped files are committed to a temporary repository first."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = tmp_path_factory.mktemp("bundle")
    tracked = bundle.tracked_files(REPO_ROOT)
    root = REPO_ROOT
    if bundle.LOADER_SOURCE not in tracked:
        root = tmp_path_factory.mktemp("repo")
        for path in [p for p in tracked if bundle.layout(p)] + [bundle.LOADER_SOURCE]:
            if (REPO_ROOT / path).is_file():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(REPO_ROOT / path, root / path)
        _git(root, "init", "-q", "-b", "main")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", "envsync")
    return bundle.build(out, root, version="0.0.0-test", allow_dirty=True).path


def _image_step(run: str, tmp_path: Path, tarball: Path, env: dict[str, str] | None = None) -> tuple[Path, str]:
    """Run one RUN of the bundle stage the way the image's shell runs it (bash with errexit, nounset and
    pipefail), with /opt/envsync and the copied bundle moved under tmp_path; (root, its output)."""
    root = tmp_path / "opt-envsync"
    _arg, copied = _bundle_copy()
    command = run.replace(copied, str(tarball)).replace(str(IMAGE_ROOT), str(root))
    bin_dir = tmp_path / "bin"  # `python` is the image's python: here, the one running the tests
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").unlink(missing_ok=True)
    (bin_dir / "python").symlink_to(sys.executable)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-o", "errexit", "-o", "nounset", "-c", command],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stdout}{result.stderr}")
    return root, result.stdout + result.stderr


def test_the_image_step_unpacks_and_verifies_a_real_bundle(real_bundle: Path, tmp_path: Path) -> None:
    root, output = _image_step(_unpack_run(), tmp_path, real_bundle)
    built = bundle.read(real_bundle)
    assert f"bundle verified: envsync 0.0.0-test, {len(built.files) - 1} files, digest {built.digest}" in output
    # Everything Airflow and envsync are pointed at is there.
    for key, path in IMAGE_ENV.items():
        local = root / PurePosixPath(path).relative_to(IMAGE_ROOT)
        assert local.exists(), f"{key}={path}: not in the unpacked bundle"
    assert (root / bundle.LOCK_FILE).read_bytes() == built.files[bundle.LOCK_FILE]
    config = root / PurePosixPath(IMAGE_ENV["ENVSYNC_CONFIG"]).relative_to(IMAGE_ROOT)
    assert config.read_bytes() == built.files[bundle.CONFIG_TEMPLATE]
    assert (root / "plugins" / "envsync" / "core" / "paths.py").is_file()
    # Airflow (its own file discovery) sees every DAG of the bundle but not the Cloud Composer loader,
    # under either .airflowignore syntax.
    from airflow._shared.module_loading.file_discovery import find_path_from_directory

    dags = root / "dags"
    assert (dags / PurePosixPath(bundle.LOADER).name).is_file()
    for syntax in ("glob", "regexp"):
        seen = sorted(
            Path(p).stem for p in find_path_from_directory(str(dags), ".airflowignore", syntax) if p.endswith(".py")
        )
        assert seen == built.dag_ids(), (syntax, seen)


def test_the_image_step_refuses_a_build_without_a_bundle(tmp_path: Path) -> None:
    unpack, _final, _name = _airflow_stages()
    guard = next(args for instr, args in unpack if instr == "RUN" and "BUNDLE" in args)
    with pytest.raises(AssertionError, match="make bundle"):
        _image_step(guard, tmp_path, tmp_path / "none.tar.gz")
    _image_step(guard, tmp_path, tmp_path / "none.tar.gz", env={"BUNDLE": "dist/envsync-1.2.0.tar.gz"})


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("change", "has a sha256 other than the one MANIFEST.json lists"),
        ("remove", "is missing"),
        ("add", "is not listed in MANIFEST.json"),
    ],
)
def test_the_image_verification_fails_naming_the_bad_file(
    real_bundle: Path, tmp_path: Path, damage: str, named: str
) -> None:
    root = tmp_path / "opt-envsync"
    with tarfile.open(real_bundle, "r:gz") as tar:
        tar.extractall(root, filter="data")
    command = [sys.executable, *_verification_command()[1:-1], str(root)]
    passed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert passed.returncode == 0, passed.stderr
    bad = "dags/prod_to_dev_sync.py" if damage != "add" else "plugins/envsync/extra.py"
    if damage == "change":
        with (root / bad).open("ab") as handle:
            handle.write(b"\n# changed after the build\n")
    elif damage == "remove":
        (root / bad).unlink()
    else:
        (root / bad).write_bytes(b"print('not in the manifest')\n")
    failed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"bundle verification failed: {bad} {named}" in failed.stderr, failed.stderr


# ---------------------------------------------------------------------------- 7. the Compose Specification


def _schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema (pinned in requirements.txt) with its vendored Compose Specification schema:
    what `docker compose config` validates, without a Docker engine or plugin, offline."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_compose_file_matches_the_compose_specification_schema() -> None:
    checked = _schema_check(COMPOSE_FILE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "validation done" in checked.stdout


@pytest.mark.parametrize(
    ("where", "key", "named"),
    [
        ("service", "restart_polcy", "'restart_polcy' was unexpected"),
        ("top", "volume", "'volume' does not match"),
        ("healthcheck", "intervall", "'healthcheck'"),  # the schema names the block that holds it
    ],
)
def test_a_key_the_specification_does_not_know_fails_the_schema_check(
    tmp_path: Path, where: str, key: str, named: str
) -> None:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    service = data["services"]["airflow-apiserver"] if "airflow-apiserver" in data["services"] else None
    service = service or next(s for s in data["services"].values() if s.get("healthcheck"))
    if where == "top":
        data[key] = {}
    elif where == "service":
        service[key] = "always"
    else:
        service["healthcheck"][key] = "10s"
    planted = tmp_path / "docker-compose.yaml"
    planted.write_text(yaml.safe_dump(data, sort_keys=False))
    checked = _schema_check(planted)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert named in checked.stdout + checked.stderr
