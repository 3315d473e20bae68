"""Deploys of the envsync bundle on the GCS emulator (envsync.deploy): a release is uploaded whole before
ONE write of CURRENT.json switches to it; prod takes only a digest staging deployed and smoke-tested,
with the confirmation phrase; a smoke test against a real Airflow (api-server, scheduler,
dag-processor: tests/e2e/cluster.py) whose DAG folder is synced from the bucket as Cloud Composer does;
rollback; an interrupted deploy and a lost race leave the previous release live; Slack messages."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploykit import REPO_ROOT, commit, objects, project_repo, sync_like_composer
from webhookkit import Webhook

from envsync.deploy import bundle as bundles
from envsync.deploy import release
from envsync.deploy.__main__ import main

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.gcp_incompatible]

PROJECT = "envsync-deploy"  # the deploy test's own project on the emulator (its demo prod, its state bucket)
UTC = dt.UTC


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bundles.Bundle]:
    """Two bundles of this project (r1, and r2 with one SQL file changed), and r3 (another change)."""
    repo = project_repo(tmp_path_factory.mktemp("repo"))
    out = tmp_path_factory.mktemp("dist")
    built = {"r1": bundles.build(out / "r1", repo, version="1.0.0")}
    for name, version in (("r2", "1.1.0"), ("r3", "1.2.0")):
        with (repo / "sql" / "common" / "deploy_marker.sql").open("a") as handle:
            handle.write(f"-- {name}\n")
        commit(repo, name)
        built[name] = bundles.build(out / name, repo, version=version)
    assert len({b.digest for b in built.values()}) == 3
    return built


@pytest.fixture
def storage(emulators: Any) -> Any:
    from envsync.core.clients import storage_client

    return storage_client(PROJECT)


@pytest.fixture
def make_bucket(storage: Any) -> Callable[[str], str]:
    def make(kind: str) -> str:
        name = f"envsync-{kind}-{uuid.uuid4().hex[:8]}"
        storage.create_bucket(name)
        return name

    return make


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The shipped config on the deploy test's own project and state bucket."""
    data = yaml.safe_load((REPO_ROOT / "config" / "envsync.yaml").read_text())
    data.update(project=PROJECT, state={"bucket": f"{PROJECT}-state"})
    path = tmp_path / "envsync.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def make(target: str, env: dict[str, str] | None = None, **variables: str | Path) -> int:
    """Run `make <target> VAR=value ...` in the repository, as the CD workflow does; its exit status."""
    import os
    import subprocess

    done = subprocess.run(
        ["make", "--no-print-directory", "-s", target, *(f"{k}={v}" for k, v in variables.items())],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    print(done.stdout[-3000:], done.stderr[-3000:])
    return done.returncode


def deploy(built: bundles.Bundle, bucket: str, env: str, *extra: str | Path) -> int:
    return cli("deploy", "--bundle", built.path, "--bucket", bucket, "--environment", env, "--actor", "ci", *extra)


def current(storage: Any, bucket: str) -> dict[str, Any]:
    return dict(json.loads(storage.bucket(bucket).blob(release.CURRENT).download_as_bytes()))


def ledger(storage: Any, bucket: str) -> list[dict[str, Any]]:
    return release.ledger(release.Bucket(storage, bucket))


def texts(webhook: Webhook) -> list[str]:
    return [post["text"] for post in webhook.posts]


def test_deploy_uploads_the_release_then_switches(
    builds: dict[str, bundles.Bundle], storage: Any, make_bucket: Callable[[str], str], config: Path, webhook: Webhook
) -> None:
    staging = make_bucket("staging")
    r1 = builds["r1"]
    assert deploy(r1, staging, "staging", "--config", config) == 0
    prefix = f"{release.RELEASES}/{r1.release}/"
    stored = objects(storage, staging)
    assert {k.removeprefix(prefix): v for k, v in stored.items() if k.startswith(prefix)} == {
        name: hashlib.sha256(data).hexdigest() for name, data in r1.files.items()
    }
    config_object = f"{release.ROOT}/config/envsync-{hashlib.sha256(config.read_bytes()).hexdigest()[:12]}.yaml"
    assert stored[config_object] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert stored[bundles.LOADER] == hashlib.sha256(r1.files[bundles.LOADER]).hexdigest()
    live = current(storage, staging)
    assert {k: live[k] for k in ("environment", "release", "prefix", "version", "digest", "config")} == {
        "environment": "staging",
        "release": r1.release,
        "prefix": prefix.rstrip("/"),
        "version": "1.0.0",
        "digest": r1.digest,
        "config": config_object,
    }
    [entry] = ledger(storage, staging)
    assert (entry["action"], entry["result"], entry["actor"], entry["digest"]) == (
        "deploy",
        "deployed",
        "ci",
        r1.digest,
    )
    # the same bundle again: every file is already there (kept, not rewritten), CURRENT names it again
    generations = {b.name: b.generation for b in storage.list_blobs(staging, prefix=prefix)}
    assert deploy(r1, staging, "staging") == 0
    assert {b.name: b.generation for b in storage.list_blobs(staging, prefix=prefix)} == generations
    assert current(storage, staging)["config"] == config_object  # the config stays the environment's
    assert texts(webhook)[0].startswith(":rocket: envsync *1.0.0* deployed to *staging* by ci\nrelease " + r1.release)
    assert len(webhook.posts) == 2


def test_an_interrupted_deploy_leaves_the_previous_release_live(
    builds: dict[str, bundles.Bundle],
    storage: Any,
    make_bucket: Callable[[str], str],
    config: Path,
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    staging = make_bucket("staging")
    r1, r2 = builds["r1"], builds["r2"]
    assert deploy(r1, staging, "staging", "--config", config) == 0
    before = objects(storage, staging)
    live_before = current(storage, staging)

    real_put = release.Bucket.put_immutable
    calls = {"n": 0}
    lock = threading.Lock()

    def failing_put(self: release.Bucket, name: str, data: bytes) -> bool:
        with lock:  # uploads run on several threads
            calls["n"] += 1
            call = calls["n"]
        if call > 25:
            raise ConnectionError("network gone after 25 files")
        return real_put(self, name, data)

    monkeypatch.setattr(release.Bucket, "put_immutable", failing_put)
    with pytest.raises(ConnectionError, match="network gone"):
        release.deploy(
            bundles.read(r2.path), release.Bucket(storage, staging), "staging", actor="ci", notify=lambda e: None
        )
    after = objects(storage, staging)
    # the previous release, its config, CURRENT and the loader are untouched; 25 files of r2 were written
    assert current(storage, staging) == live_before
    assert {k: v for k, v in after.items() if k in before and k != release.LEDGER} == {
        k: v for k, v in before.items() if k != release.LEDGER
    }
    partial = [k for k in after if k.startswith(f"{release.RELEASES}/{r2.release}/")]
    assert len(partial) == 25 and f"{release.RELEASES}/{r2.release}/MANIFEST.json" not in partial
    assert ledger(storage, staging)[-1]["result"] == "failed"
    assert "ConnectionError: network gone after 25 files" in ledger(storage, staging)[-1]["reason"]

    # the same deploy again resumes (the 25 files are kept) and switches
    monkeypatch.setattr(release.Bucket, "put_immutable", real_put)
    assert deploy(r2, staging, "staging") == 0
    assert current(storage, staging)["release"] == r2.release
    assert current(storage, staging)["config"] == live_before["config"]


def test_two_deploys_racing_for_the_switch_cannot_both_win(
    builds: dict[str, bundles.Bundle],
    storage: Any,
    make_bucket: Callable[[str], str],
    config: Path,
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    staging = make_bucket("staging")
    r1, r2, r3 = builds["r1"], builds["r2"], builds["r3"]
    assert deploy(r1, staging, "staging", "--config", config) == 0
    real_put = release.Bucket.put_immutable
    raced = {"done": False}

    def put_then_race(self: release.Bucket, name: str, data: bytes) -> bool:
        if name.endswith(f"{r2.release}/MANIFEST.json") and not raced["done"]:
            raced["done"] = True  # another deploy (r3) runs to the end while r2 is about to switch
            assert deploy(r3, staging, "staging") == 0
        return real_put(self, name, data)

    monkeypatch.setattr(release.Bucket, "put_immutable", put_then_race)
    assert deploy(r2, staging, "staging") == 2  # refused: it lost the race, switched nothing
    assert current(storage, staging)["release"] == r3.release
    results = [(e["release"], e["result"]) for e in ledger(storage, staging)]
    assert results == [(r1.release, "deployed"), (r3.release, "deployed"), (r2.release, "refused")]
    assert "another deploy or rollback switched first" in ledger(storage, staging)[-1]["reason"]


def test_prod_refuses_an_unvouched_digest_or_a_wrong_phrase_before_any_upload(
    builds: dict[str, bundles.Bundle], storage: Any, make_bucket: Callable[[str], str], config: Path, webhook: Webhook
) -> None:
    staging, prod = make_bucket("staging"), make_bucket("prod")
    r1 = builds["r1"]
    phrase = "deploy envsync 1.0.0 to prod"
    assert deploy(r1, staging, "staging", "--config", config) == 0  # deployed, never smoke-tested

    attempts = [
        ("--confirm", phrase),  # no staging bucket
        ("--staging-bucket", staging, "--confirm", phrase),  # not smoke-tested
        ("--staging-bucket", staging),  # no phrase
        ("--staging-bucket", staging, "--confirm", "deploy envsync 1.0.0 to PROD"),  # wrong phrase
    ]
    for args in attempts:
        assert deploy(r1, prod, "prod", "--config", config, *args) == 2
    assert list(objects(storage, prod)) == [release.LEDGER]  # nothing but the ledger of refusals
    reasons = [e["reason"] for e in ledger(storage, prod)]
    assert [e["result"] for e in ledger(storage, prod)] == ["refused"] * 4
    assert "--staging-bucket is missing" in reasons[0]
    assert f"records no passed smoke test of digest {r1.digest[:12]} on staging" in reasons[1]
    assert f"--confirm is missing: type exactly '{phrase}'" in reasons[2]
    assert (
        f"--confirm 'deploy envsync 1.0.0 to PROD' is not the confirmation phrase: type exactly '{phrase}'"
        in (reasons[3])
    )
    # a smoke_failed on staging does not vouch either
    release.record(
        release.Bucket(storage, staging),
        {"action": "smoke", "environment": "staging", "result": "smoke_failed", "digest": r1.digest},
    )
    assert deploy(r1, prod, "prod", "--staging-bucket", staging, "--confirm", phrase, "--config", config) == 2
    assert "(its last smoke result is smoke_failed)" in ledger(storage, prod)[-1]["reason"]
    assert list(objects(storage, prod)) == [release.LEDGER]
    refusals = [t for t in texts(webhook) if t.startswith(":no_entry: envsync deploy on *prod* REFUSED (ci)")]
    assert len(refusals) == 5


@pytest.fixture
def demo_prod(emulators: Any) -> None:
    from envsync.core.clients import bigquery_client
    from envsync.dev.demo import create_demo_prod

    create_demo_prod(bigquery_client(PROJECT, "US"), PROJECT, "US", 300)


@pytest.fixture
def composer(tmp_path: Path, emulators: Any) -> Iterator[Any]:
    """A real Airflow cluster (LocalExecutor on the local Postgres) whose dags/, plugins/ and data/ are
    local folders, filled from a bucket by sync_like_composer; ENVSYNC_COMPOSER_DATA is its data/."""
    from cluster import AirflowCluster, postgres_reachable

    reason = postgres_reachable()
    if reason:
        pytest.skip(f"the deploy smoke test needs PostgreSQL for its Airflow cluster: {reason}")
    root = tmp_path / "composer"
    for folder in ("dags", "plugins", "data"):
        (root / folder).mkdir(parents=True)
    cluster = AirflowCluster(
        extra_env={**emulators.env(), "ENVSYNC_COMPOSER_DATA": str(root / "data")},
        dags_folder=root / "dags",
        plugins_folder=root / "plugins",
    )
    cluster.start()
    cluster.root = root  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.timeout(900)
def test_staging_smoke_promotion_to_prod_and_rollback_on_a_real_airflow(
    builds: dict[str, bundles.Bundle],
    storage: Any,
    make_bucket: Callable[[str], str],
    config: Path,
    demo_prod: None,
    composer: Any,
    webhook: Webhook,
) -> None:
    started = time.monotonic()
    staging, prod = make_bucket("staging"), make_bucket("prod")
    r1, r2 = builds["r1"], builds["r2"]
    root: Path = composer.root
    smoke = ("smoke", "--bucket", staging, "--environment", "staging", "--api-url", composer.base_url)
    login = ("--username", "admin", "--password", composer.password(), "--actor", "ci")

    # the CD workflow's steps: make deploy / smoke / rollback
    assert make("deploy", BUNDLE=r1.path, BUCKET=staging, ENVIRONMENT="staging", CONFIG=config, ACTOR="ci") == 0
    assert deploy(r2, staging, "staging") == 0
    # Airflow has not seen the bucket yet: the smoke test fails, naming the missing DAGs, and says so
    assert cli(*smoke, *login, "--wait", "0") == 1
    failed = ledger(storage, staging)[-1]
    assert (failed["result"], failed["digest"]) == ("smoke_failed", r2.digest)
    assert "DAG prod_to_dev_sync is missing" in failed["reason"]

    assert sync_like_composer(storage, staging, root) > len(r2.files)
    assert sorted(p.name for p in (root / "dags").iterdir()) == ["envsync_dags.py"]  # only the loader is live
    t0 = time.monotonic()
    status = make(
        "smoke",
        env={"ENVSYNC_AIRFLOW_USERNAME": "admin", "ENVSYNC_AIRFLOW_PASSWORD": composer.password()},
        BUCKET=staging,
        ENVIRONMENT="staging",
        API_URL=composer.base_url,
        ACTOR="ci",
        SMOKE_ARGS="--wait 180 --run-timeout 400 --unpause",
    )
    assert status == 0, f"{ledger(storage, staging)[-1].get('reason')}\n{composer.tail_logs()}"
    smoke_seconds = time.monotonic() - t0
    passed = ledger(storage, staging)[-1]
    assert (passed["result"], passed["digest"], passed["release"]) == ("smoke_passed", r2.digest, r2.release)
    dry_run = passed["dry_run"]
    run = composer.api("GET", f"/api/v2/dags/prod_to_dev_sync/dagRuns/{dry_run}")
    assert run["state"] == "success" and run["conf"] == {"dry_run": True}
    details = composer.api("GET", "/api/v2/dags/prod_to_dev_sync/details")
    assert f"envsync:{r2.release}" in {t["name"] for t in details["tags"]}
    assert details["fileloc"].endswith("dags/envsync_dags.py")
    assert not composer.import_errors()

    # prod takes the digest staging vouches for, with the phrase; prod's CURRENT names the same digest
    phrase = f"deploy envsync {r2.version} to prod"
    args = ("--staging-bucket", staging, "--config", config)
    assert deploy(r2, prod, "prod", *args) == 2  # the phrase is still required
    assert (
        make(
            "deploy",
            BUNDLE=r2.path,
            BUCKET=prod,
            ENVIRONMENT="prod",
            STAGING_BUCKET=staging,
            CONFIG=config,
            CONFIRM=phrase,
            ACTOR="ci",
        )
        == 0
    )
    assert current(storage, prod)["digest"] == current(storage, staging)["digest"] == r2.digest
    assert deploy(r1, prod, "prod", *args, "--confirm", "deploy envsync 1.0.0 to prod") == 2  # r1: never smoked

    # rollback of staging: back to r1 in one write; the synced Airflow serves r1 again
    assert make("rollback", BUCKET=staging, ENVIRONMENT="staging", ACTOR="ci") == 0
    back = current(storage, staging)
    assert (back["release"], back["rolled_back_from"]) == (r1.release, r2.release)
    assert ledger(storage, staging)[-1]["result"] == "rolled_back"
    sync_like_composer(storage, staging, root)
    from envsync.deploy.smoke import AirflowApi, served

    api = AirflowApi(composer.base_url, auth="password", username="admin", password=composer.password())
    try:
        deadline = time.monotonic() + 120
        expected = list(r1.manifest["dags"])  # type: ignore[call-overload]
        while (problems := served(api, expected, f"envsync:{r1.release}")) and time.monotonic() < deadline:
            time.sleep(2)
        assert not problems, problems
    finally:
        api.close()
    # a second rollback has nothing good before r1 left: refused, CURRENT unchanged
    assert cli("rollback", "--bucket", staging, "--environment", "staging", "--actor", "ci") == 2
    assert current(storage, staging)["release"] == r1.release

    messages = texts(webhook)
    kinds = [m.split(" ", 1)[0] for m in messages]
    assert kinds.count(":rocket:") == 3  # staging r1, staging r2, prod r2
    assert any(m.startswith(f":x: envsync smoke test of *{r2.release}* on *staging* FAILED") for m in messages)
    assert any(
        m.startswith(f":white_check_mark: envsync smoke test of *{r2.release}* on *staging* passed") for m in messages
    )
    assert any(
        m.startswith(":rewind: envsync *staging* rolled back by ci") and f"from {r2.release} to {r1.release}" in m
        for m in messages
    )
    print(
        f"\n[deploy] staging -> smoke ({smoke_seconds:.0f} s) -> prod -> rollback in {time.monotonic() - started:.0f} s"
    )
