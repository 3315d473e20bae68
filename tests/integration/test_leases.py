"""The environment lease (envsync.core.lease) on the GCS emulator, whose request preconditions are
Cloud Storage's (bqfidelity.gcs): one holder at a time, a bounded wait, stale takeover by exactly one
taker, a lost lease fencing every later write."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.gcp_incompatible]


@pytest.fixture
def bucket(emulators: Any) -> Iterator[str]:
    from envsync.core.clients import storage_client

    client = storage_client("envsync-demo")
    made = client.create_bucket(f"lease-{uuid.uuid4().hex[:10]}")
    yield made.name
    for blob in client.list_blobs(made.name):
        blob.delete()
    made.delete()


def leases(bucket: str, **settings: Any) -> Any:
    from envsync.core.clients import storage_client
    from envsync.core.lease import Leases, LeaseSettings

    is_running = settings.pop("is_running", lambda holder: None)
    return Leases(storage_client("envsync-demo"), bucket, LeaseSettings(**settings), is_running=is_running)


def holder(run: str, dag: str = "prod_to_dev_sync", deployment: str = "airflow-a") -> Any:
    from envsync.core.lease import Holder

    return Holder(dag, run, "plan", deployment)


def test_a_second_writer_is_refused_naming_the_holder_and_a_retry_of_the_holder_keeps_it(bucket: str) -> None:
    from envsync.core.lease import LeaseHeld

    store = leases(bucket, wait_seconds=0)
    assert store.acquire(["dev"], holder("run-1")) == []
    with pytest.raises(LeaseHeld) as refused:
        store.acquire(["dev", "qa"], holder("run-2", dag="reseed_environments"))
    assert "run run-1 of DAG prod_to_dev_sync" in str(refused.value) and "writes nothing" in str(refused.value)
    assert store.read("qa") is None  # what the refused run took first was given back
    assert store.acquire(["dev"], holder("run-1")) == []  # a retried plan task keeps its own lease
    assert store.read("dev").holder.run_id == "run-1"


def test_a_writer_waits_for_a_release_within_its_bound(bucket: str) -> None:
    first = leases(bucket, wait_seconds=0)
    first.acquire(["staging"], holder("cut-1", dag="staging_cut"))
    threading.Timer(1.5, lambda: first.release("staging", holder("cut-1", dag="staging_cut"))).start()
    waits: list[float] = []
    started = time.monotonic()
    leases(bucket, wait_seconds=30, poll_seconds=0.2).acquire(
        ["staging"],
        holder("reseed-1", dag="reseed_environments"),
        on_wait=lambda env, other, waited: waits.append(waited),
    )
    assert 1.0 < time.monotonic() - started < 10 and waits
    assert first.read("staging").holder.run_id == "reseed-1"
    assert first.last_release("staging")["run_id"] == "cut-1"


def test_a_stale_lease_is_taken_over_by_exactly_one_of_many_takers(bucket: str) -> None:
    from envsync.core.lease import LeaseHeld

    leases(bucket).acquire(["prod"], holder("dead", dag="restore"))
    alive = lambda h: h.run_id != "dead"  # noqa: E731  (Airflow says the dead run is no longer running)
    won: list[str] = []
    refused: list[str] = []

    took_over: list[list[str]] = []

    def take(n: int) -> None:
        try:
            takeovers = leases(bucket, wait_seconds=0, is_running=alive).acquire(["prod"], holder(f"taker-{n}"))
            won.append(f"taker-{n}")
            took_over.append([t.previous.run_id for t in takeovers])
        except LeaseHeld:
            refused.append(f"taker-{n}")

    threads = [threading.Thread(target=take, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7, (won, refused)
    assert took_over == [["dead"]]  # the one that won took it from the dead run, and cleans up after it
    assert leases(bucket).read("prod").holder.run_id == won[0]


def test_a_heartbeat_older_than_the_bound_is_stale(bucket: str) -> None:
    store = leases(bucket, wait_seconds=0, stale_after_seconds=1)
    store.acquire(["dev"], holder("old"))
    time.sleep(1.5)
    takeovers = store.acquire(["dev"], holder("new"))
    assert [t.previous.run_id for t in takeovers] == ["old"] and "heartbeat" in takeovers[0].reason


def test_a_lease_taken_over_is_lost_and_its_fence_refuses_every_later_write(bucket: str) -> None:
    from envsync.core.guard import GuardedBigQuery, WriteGuard
    from envsync.core.lease import Heartbeat, LeaseLost

    me = holder("slow")
    store = leases(bucket, wait_seconds=0, heartbeat_seconds=0.2, stale_after_seconds=600)
    store.acquire(["dev"], me)
    with Heartbeat(store, ["dev"], me) as beat:
        first = store.read("dev").updated
        time.sleep(0.7)
        assert store.read("dev").updated > first  # renewed while the task works
        leases(bucket, wait_seconds=0, is_running=lambda h: h.run_id != "slow").acquire(["dev"], holder("other"))
        time.sleep(0.7)
        bq = GuardedBigQuery(object(), WriteGuard("envsync-demo", ["sales"], ["dev_"]), "US")  # type: ignore[arg-type]
        bq.fence = beat.fence
        with pytest.raises(LeaseLost, match="now held by run other"):
            bq.delete_table(__import__("envsync.core.guard").core.guard.TableRef("envsync-demo", "dev_sales", "t"))
    assert store.release("dev", me) is False  # never another run's lease
    assert store.read("dev").holder.run_id == "other"


def test_a_plan_task_renews_the_leases_it_took_while_it_plans_and_stops_when_it_ends(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan of thousands of tables outlasts `leases.stale_after_seconds`: the plan task's heartbeat
    keeps its lease from being taken over as stale; once the task ends, only the unit tasks renew it."""
    from types import SimpleNamespace

    from envsync.core.lease import LeaseHeld
    from envsync.operators import leasing, runtime

    store = leases(bucket, wait_seconds=0, heartbeat_seconds=0.2, stale_after_seconds=1)
    written: dict[str, Any] = {}
    monkeypatch.setattr(leasing, "leases_for", lambda config, conn_id: store)
    monkeypatch.setattr(runtime, "manifest_store", lambda config, conn_id: SimpleNamespace(write=written.__setitem__))
    monkeypatch.setattr(runtime, "run_prefix", lambda manifest, context: "runs/plan")
    context = {"dag": SimpleNamespace(dag_id="prod_to_dev_sync"), "run_id": "long-plan"}
    other = leases(bucket, wait_seconds=0, stale_after_seconds=1, is_running=lambda h: None)

    class Plan:
        @leasing.renews_taken_leases
        def execute(self, context: Any) -> str:
            leasing.take_leases(SimpleNamespace(), "conn", context, "plan", ["dev"])
            time.sleep(2.0)  # planning, twice as long as a heartbeat may be old
            with pytest.raises(LeaseHeld, match="run long-plan"):
                other.acquire(["dev"], holder("intruder"))
            return "planned"

    assert Plan().execute(context) == "planned"
    assert written["runs/plan/leases.json"]["envs"] == ["dev"]
    time.sleep(1.5)  # no heartbeat after the task: the lease goes stale
    assert [t.previous.run_id for t in other.acquire(["dev"], holder("next"))] == ["long-plan"]
