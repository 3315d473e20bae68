"""An environment's Composer bucket: releases, the live pointer, the deploy ledger, promotion, rollback.

    gs://<bucket>/data/envsync/releases/<version>-<digest12>/...   a release: every file of a bundle,
                                                     MANIFEST.json written last (the release is whole)
    gs://<bucket>/data/envsync/CURRENT.json          the live release: its prefix, version, digest and
                                                     the config it runs with; switched by ONE write
                                                     with a generation precondition
    gs://<bucket>/data/envsync/config/envsync-<sha12>.yaml   configs given with `deploy --config FILE`
                                                     (content-addressed, never overwritten)
    gs://<bucket>/data/envsync/config/envsync.yaml   a config uploaded by hand (used when no deploy
                                                     named one)
    gs://<bucket>/data/envsync/deploys.json          the ledger: every deploy, smoke, rollback and
                                                     refusal (who, environment, version, digest, when,
                                                     result), rewritten with a generation precondition
    gs://<bucket>/dags/envsync_dags.py               the stable loader (envsync/deploy/loader.py)

Release files are created with `if_generation_match=0`: a file that exists already is kept when its
sha256 is the bundle's (a re-run of an interrupted deploy resumes) and is an error otherwise. Until
CURRENT.json is switched no worker reads the new release, so an interrupted deploy leaves the previous
release live and untouched. Two deploys racing for the switch cannot both win: the loser's write
answers 412 (https://cloud.google.com/storage/docs/request-preconditions) and it changes nothing.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envsync.deploy.bundle import LOADER, MANIFEST, Bundle, release_name, sha256

if TYPE_CHECKING:
    import google.cloud.storage as storage  # the form mypy resolves in the google.cloud namespace

log = logging.getLogger(__name__)

ROOT = "data/envsync"
RELEASES = f"{ROOT}/releases"
CURRENT = f"{ROOT}/CURRENT.json"
LEDGER = f"{ROOT}/deploys.json"
STANDING_CONFIG = f"{ROOT}/config/envsync.yaml"
ENVIRONMENTS = ("staging", "prod")
RESULTS = ("deployed", "failed", "smoke_passed", "smoke_failed", "rolled_back", "refused")
LEDGER_ATTEMPTS = 8
UPLOAD_THREADS = 8


class DeployError(RuntimeError):
    """A deploy, rollback or smoke could not be done; the message names the bad value and what is allowed."""


class Refused(DeployError):
    """A deploy or rollback refused before anything was uploaded or switched (recorded in the ledger)."""


class ConcurrentDeploy(Refused):
    """Another deploy or rollback switched CURRENT.json first: this one switched nothing (recorded)."""


def prod_phrase(version: str) -> str:
    """The exact text `--confirm` must carry to deploy `version` to prod."""
    return f"deploy envsync {version} to prod"


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def default_actor() -> str:
    """Who deploys: GITHUB_ACTOR on GitHub Actions, else the local user."""
    try:
        local = getpass.getuser()
    except (KeyError, OSError):
        local = "unknown"
    return os.environ.get("GITHUB_ACTOR") or local


def check_environment(environment: str) -> str:
    if environment not in ENVIRONMENTS:
        raise DeployError(f"environment {environment!r} is not allowed; allowed: {list(ENVIRONMENTS)}")
    return environment


# ------------------------------------------------------------------------------------------ bucket


@dataclass
class Bucket:
    """The JSON documents and files envsync keeps in one Composer bucket."""

    client: storage.Client
    name: str

    @property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(self.name)

    def url(self, object_name: str) -> str:
        return f"gs://{self.name}/{object_name}"

    def read_json(self, object_name: str) -> tuple[Any, int]:
        """(document, generation); (None, 0) when the object does not exist."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        for _ in range(LEDGER_ATTEMPTS):
            blob = self.bucket.get_blob(object_name)
            if blob is None:
                return None, 0
            generation = int(blob.generation)
            try:
                data = blob.download_as_bytes(if_generation_match=generation)
            except (NotFound, PreconditionFailed):  # rewritten between the two requests: read again
                continue
            try:
                return json.loads(data), generation
            except ValueError as error:
                raise DeployError(f"{self.url(object_name)} is not JSON: {error}") from None
        raise DeployError(f"{self.url(object_name)} kept changing while it was read")

    def write_json(self, object_name: str, document: Any, generation: int) -> int:
        """Write `document` only if the object's generation is still `generation` (0: it must not exist);
        raises google.api_core.exceptions.PreconditionFailed otherwise. Returns the new generation."""
        blob = self.bucket.blob(object_name)
        blob.cache_control = "no-store"
        blob.upload_from_string(
            json.dumps(document, indent=2, sort_keys=True) + "\n",
            content_type="application/json",
            if_generation_match=generation,
        )
        return int(blob.generation or 0)

    def put_immutable(self, object_name: str, data: bytes) -> bool:
        """Create the object; when it exists, keep it if it holds the same bytes. True when uploaded."""
        from google.api_core.exceptions import PreconditionFailed

        digest = sha256(data)
        blob = self.bucket.blob(object_name)
        blob.metadata = {"sha256": digest}
        try:
            blob.upload_from_string(data, content_type="application/octet-stream", if_generation_match=0)
            return True
        except PreconditionFailed:
            existing = self.bucket.get_blob(object_name)
            if existing is not None and sha256(existing.download_as_bytes()) == digest:
                return False
            raise DeployError(
                f"{self.url(object_name)} exists with other content than the bundle's (sha256 {digest[:12]}): "
                "a release's files never change; delete that release's prefix only if no environment runs it"
            ) from None

    def exists(self, object_name: str) -> bool:
        return self.bucket.get_blob(object_name) is not None

    def names(self, prefix: str = "") -> list[str]:
        return sorted(blob.name for blob in self.client.list_blobs(self.name, prefix=prefix or None))


# ------------------------------------------------------------------------------------------ ledger


def ledger(bucket: Bucket) -> list[dict[str, Any]]:
    document, _ = bucket.read_json(LEDGER)
    return list((document or {}).get("deploys") or [])


def record(bucket: Bucket, entry: dict[str, Any]) -> dict[str, Any]:
    """Append `entry` to the bucket's ledger (read, append, write with a generation precondition; again
    on a lost race)."""
    from google.api_core.exceptions import PreconditionFailed

    if entry.get("result") not in RESULTS:
        raise ValueError(f"ledger result must be one of {list(RESULTS)}, got {entry.get('result')!r}")
    entry = {"at": now(), "bucket": bucket.name, **entry}
    for attempt in range(LEDGER_ATTEMPTS):
        document, generation = bucket.read_json(LEDGER)
        entries = list((document or {}).get("deploys") or [])
        try:
            bucket.write_json(LEDGER, {"deploys": [*entries, entry]}, generation)
        except PreconditionFailed:
            time.sleep(0.2 * (attempt + 1))
            continue
        log.info(
            "ledger %s: %s %s %s of %s (%s)",
            bucket.url(LEDGER),
            entry.get("environment"),
            entry.get("action"),
            entry["result"],
            entry.get("release") or entry.get("digest"),
            entry.get("actor"),
        )
        return entry
    raise DeployError(f"could not append to {bucket.url(LEDGER)}: {LEDGER_ATTEMPTS} writers raced for it")


def smoke_state(entries: Sequence[dict[str, Any]], digest: str, environment: str) -> str | None:
    """The newest smoke result (smoke_passed / smoke_failed) of `digest` in `environment`, or None."""
    for entry in reversed(entries):
        if (
            entry.get("digest") == digest
            and entry.get("environment") == environment
            and entry.get("result") in ("smoke_passed", "smoke_failed")
        ):
            return str(entry["result"])
    return None


def was_deployed(entries: Sequence[dict[str, Any]], digest: str, environment: str) -> bool:
    return any(
        e.get("digest") == digest and e.get("environment") == environment and e.get("result") == "deployed"
        for e in entries
    )


# --------------------------------------------------------------------------------------------- deploy


def promotion_problems(bundle: Bundle, *, staging: Bucket | None, target: Bucket, confirm: str | None) -> list[str]:
    """What is missing for `bundle` to go to prod (empty: nothing)."""
    phrase = prod_phrase(bundle.version)
    problems: list[str] = []
    if staging is None:
        problems.append(
            "--staging-bucket is missing: prod only takes a digest the staging bucket's ledger records as "
            "deployed and smoke_passed"
        )
    elif staging.name == target.name:
        problems.append(f"--staging-bucket {staging.name} is the prod bucket itself")
    else:
        entries = ledger(staging)
        if not was_deployed(entries, bundle.digest, "staging"):
            problems.append(f"{staging.url(LEDGER)} records no staging deploy of digest {bundle.digest[:12]}")
        state = smoke_state(entries, bundle.digest, "staging")
        if state != "smoke_passed":
            problems.append(
                f"{staging.url(LEDGER)} records no passed smoke test of digest {bundle.digest[:12]} on staging"
                + (f" (its last smoke result is {state})" if state else "")
            )
    if confirm is None:
        problems.append(f"--confirm is missing: type exactly {phrase!r}")
    elif confirm != phrase:
        problems.append(f"--confirm {confirm!r} is not the confirmation phrase: type exactly {phrase!r}")
    return problems


def resolve_config(
    bucket: Bucket, config_file: Path | None, previous: dict[str, Any] | None
) -> tuple[str, bytes | None]:
    """The config object the release runs with, and its bytes when they must be uploaded."""
    if config_file is not None:
        try:
            data = config_file.read_bytes()
        except OSError as error:
            raise DeployError(f"--config {config_file}: cannot read it: {error.strerror}") from None
        from envsync.core.config import ConfigError, load_config

        try:
            load_config(config_file)
        except ConfigError as error:
            raise DeployError(f"--config {config_file} is not a valid envsync config: {error}") from None
        return f"{ROOT}/config/envsync-{sha256(data)[:12]}.yaml", data
    if previous and previous.get("config"):
        return str(previous["config"]), None
    if bucket.exists(STANDING_CONFIG):
        return STANDING_CONFIG, None
    raise DeployError(
        f"no config for this environment: pass --config FILE (the environment's envsync.yaml), or upload it to "
        f"{bucket.url(STANDING_CONFIG)} (the bundle carries only the template, "
        "data/envsync/config/envsync.yaml.template)"
    )


def deploy(
    bundle: Bundle,
    target: Bucket,
    environment: str,
    *,
    actor: str,
    confirm: str | None = None,
    staging: Bucket | None = None,
    config_file: Path | None = None,
    notify: Callable[[dict[str, Any]], None] = lambda entry: None,
) -> dict[str, Any]:
    """Upload the bundle as a release of `target`, then switch CURRENT.json to it in one write.

    Returns the ledger entry (result deployed). Raises Refused (recorded; nothing uploaded) when a rule
    forbids it, ConcurrentDeploy when another deploy switched first, DeployError otherwise."""
    check_environment(environment)
    base = {
        "action": "deploy",
        "actor": actor,
        "environment": environment,
        "version": bundle.version,
        "digest": bundle.digest,
        "release": bundle.release,
        "commit": bundle.manifest.get("commit"),
    }
    previous, generation = target.read_json(CURRENT)
    problems: list[str] = []
    if previous and previous.get("environment") not in (None, environment):
        problems.append(
            f"{target.url(CURRENT)} says this bucket serves {previous.get('environment')}, not {environment}"
        )
    if environment == "prod":
        problems += promotion_problems(bundle, staging=staging, target=target, confirm=confirm)
    if problems:
        reason = f"deploy of envsync {bundle.version} (digest {bundle.digest[:12]}) to {environment} refused: " + (
            "; ".join(problems)
        )
        entry = record(target, {**base, "result": "refused", "reason": reason})
        notify(entry)
        raise Refused(reason)

    prefix = f"{RELEASES}/{bundle.release}"
    try:
        config_name, config_data = resolve_config(target, config_file, previous)
        files = sorted(name for name in bundle.files if name != MANIFEST)
        log.info("uploading %d files of %s to %s/", len(files) + 1, bundle.release, target.url(prefix))
        uploaded = upload_all(target, {f"{prefix}/{name}": bundle.files[name] for name in files})
        if config_data is not None:
            target.put_immutable(config_name, config_data)
        target.put_immutable(f"{prefix}/{MANIFEST}", bundle.files[MANIFEST])  # last: the release is whole
        log.info("release %s is whole (%d files uploaded, %d already there)", prefix, uploaded, len(files) - uploaded)
        current = {
            "environment": environment,
            "release": bundle.release,
            "prefix": prefix,
            "version": bundle.version,
            "digest": bundle.digest,
            "commit": bundle.manifest.get("commit"),
            "config": config_name,
            "switched_at": now(),
            "switched_by": actor,
        }
        switch(target, current, generation, previous)
    except ConcurrentDeploy as error:
        entry = record(target, {**base, "result": "refused", "reason": str(error)})
        notify(entry)
        raise
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        log.error(
            "deploy of %s to %s failed before the switch; %s stays live: %s",
            bundle.release,
            target.name,
            (previous or {}).get("release") or "nothing",
            reason,
        )
        try:
            notify(record(target, {**base, "result": "failed", "reason": reason}))
        except Exception as ledger_error:  # the original error matters more
            log.warning("could not record the failed deploy: %s", ledger_error)
        raise
    ensure_loader(target, bundle.files[LOADER])
    entry = record(
        target, {**base, "result": "deployed", "current": current, "previous": (previous or {}).get("release")}
    )
    notify(entry)
    return entry


def upload_all(target: Bucket, files: dict[str, bytes]) -> int:
    """Create every object (UPLOAD_THREADS at a time); the first failure stops the rest and is raised.
    Returns how many were uploaded (the others were there already with the same bytes)."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    uploaded = done = 0
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="envsync-upload") as pool:
        futures = [pool.submit(target.put_immutable, name, data) for name, data in sorted(files.items())]
        finished, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            error = future.exception() if future in finished else None
            if error is not None:
                raise error
        for future in futures:
            uploaded += bool(future.result())
            done += 1
            if done % 100 == 0:
                log.info("%d of %d files in place", done, len(files))
    return uploaded


def switch(target: Bucket, current: dict[str, Any], generation: int, previous: dict[str, Any] | None) -> None:
    """The one write that makes `current` live, if CURRENT.json is still at `generation`."""
    from google.api_core.exceptions import PreconditionFailed

    try:
        target.write_json(CURRENT, current, generation)
    except PreconditionFailed:
        now_live, _ = target.read_json(CURRENT)
        was = (previous or {}).get("release") or "absent"
        raise ConcurrentDeploy(
            f"{target.url(CURRENT)} changed while this deploy ran (it was {was}, now "
            f"{(now_live or {}).get('release')}): another deploy or rollback switched first; {current['release']} "
            "was not switched to (its files stay uploaded; run again to switch)"
        ) from None
    log.info(
        "switched %s from %s to %s",
        target.url(CURRENT),
        (previous or {}).get("release") or "nothing",
        current["release"],
    )


def ensure_loader(target: Bucket, loader: bytes) -> None:
    """gs://<bucket>/dags/envsync_dags.py holds this loader (uploaded only when it differs)."""
    blob = target.bucket.get_blob(LOADER)
    if blob is not None and sha256(blob.download_as_bytes()) == sha256(loader):
        return
    new = target.bucket.blob(LOADER)
    new.upload_from_string(loader, content_type="text/x-python", if_generation_match=blob.generation if blob else 0)
    log.info("wrote the loader %s", target.url(LOADER))


# --------------------------------------------------------------------------------------------- rollback


def rollback_target(entries: Sequence[dict[str, Any]], environment: str, live: str | None) -> dict[str, Any] | None:
    """The CURRENT record to go back to: of the releases that were live in `environment` before `live`
    (newest first; none that a rollback left), the newest that passed a smoke test, else the newest."""
    left = {e.get("from") for e in entries if e.get("result") == "rolled_back"}
    seen: list[dict[str, Any]] = []
    for entry in reversed(entries):
        current = entry.get("current")
        if (
            entry.get("environment") != environment
            or entry.get("result") not in ("deployed", "rolled_back")
            or not current
            or current.get("release") in left | {live}
            or any(c.get("release") == current.get("release") for c in seen)
        ):
            continue
        seen.append(current)
    for current in seen:
        if smoke_state(entries, str(current.get("digest")), environment) == "smoke_passed":
            return current
    return seen[0] if seen else None


def rollback(
    target: Bucket,
    environment: str,
    *,
    actor: str,
    notify: Callable[[dict[str, Any]], None] = lambda entry: None,
) -> dict[str, Any]:
    """Switch CURRENT.json back to the previous good release of `environment`, in one write."""
    check_environment(environment)
    live, generation = target.read_json(CURRENT)
    entries = ledger(target)
    base = {"action": "rollback", "actor": actor, "environment": environment}
    if live and live.get("environment") not in (None, environment):
        reason = f"{target.url(CURRENT)} says this bucket serves {live.get('environment')}, not {environment}"
        notify(record(target, {**base, "result": "refused", "reason": reason}))
        raise Refused(reason)
    back = rollback_target(entries, environment, (live or {}).get("release"))
    if back is None or not target.exists(f"{back['prefix']}/{MANIFEST}"):
        reason = (
            f"no earlier release of {environment} to roll back to in {target.url(LEDGER)}"
            if back is None
            else f"release {back['release']} is not whole in the bucket (no {back['prefix']}/{MANIFEST})"
        )
        notify(record(target, {**base, "result": "refused", "reason": reason, "release": (live or {}).get("release")}))
        raise Refused(f"rollback of {environment} refused: {reason}")
    current = {**back, "switched_at": now(), "switched_by": actor, "rolled_back_from": (live or {}).get("release")}
    try:
        switch(target, current, generation, live)
    except ConcurrentDeploy as error:
        notify(record(target, {**base, "result": "refused", "reason": str(error), "release": back["release"]}))
        raise
    entry = record(
        target,
        {
            **base,
            "result": "rolled_back",
            "version": back.get("version"),
            "digest": back.get("digest"),
            "release": back["release"],
            "from": (live or {}).get("release"),
            "current": current,
        },
    )
    notify(entry)
    return entry


def live(target: Bucket) -> dict[str, Any]:
    """The bucket's CURRENT record; DeployError when nothing is deployed."""
    current, _ = target.read_json(CURRENT)
    if not current:
        raise DeployError(f"nothing is deployed to gs://{target.name}: {target.url(CURRENT)} does not exist")
    return dict(current)


def release_manifest(target: Bucket, current: dict[str, Any]) -> dict[str, Any]:
    manifest, _ = target.read_json(f"{current['prefix']}/{MANIFEST}")
    if not manifest:
        raise DeployError(f"release {current['release']} has no {target.url(current['prefix'] + '/' + MANIFEST)}")
    return dict(manifest)


__all__ = [
    "Bucket",
    "ConcurrentDeploy",
    "DeployError",
    "Refused",
    "deploy",
    "ledger",
    "live",
    "prod_phrase",
    "record",
    "release_manifest",
    "release_name",
    "rollback",
]
