"""Parity on the emulators: a clean sync and a clean reseed are in parity with prod; drift made in dev
by hand (a dropped column, an extra table, a type change) is found, a migration promoted to qa is
listed as expected, a stale dev is flagged (its row counts past the time-travel window are said to be
impossible, not failed), the findings land in envsync_audit.parity, the latest-parity report reads
them, and the drift alert reaches the local webhook.

The prod is the demo prod (envsync.dev.demo) in its own project, so the shipped seeds fit it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sandbox
from testkit import REPO_ROOT
from webhookkit import Webhook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NS = sandbox.namespace("envsync-parity")
PROJECT = NS.project
ds, fq = NS.ds, NS.fq
UTC = dt.UTC
SALT = "test-salt-not-a-secret"
ADD_EMAIL = """-- envsync: phase=expand
alter table sales.customers add column email string;

create view marketing.customer_emails as
select customer_id, email
from sales.customers;
"""


def client():
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


def rows(sql: str, **params: Any) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    from envsync.core.guard import to_query_parameters

    config = bigquery.QueryJobConfig(query_parameters=to_query_parameters(params))
    return [dict(r) for r in client().query(NS.sql(sql), job_config=config, job_retry=None).result()]


def states(dag_run: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def findings(run_id: str) -> list[dict[str, Any]]:
    return rows(f"select * from `{PROJECT}.envsync_audit.parity` where run_id = @run_id", run_id=run_id)


def drift(found: list[dict[str, Any]], env: str) -> list[tuple[str, str]]:
    return sorted((f["finding"], f["object_name"]) for f in found if f["environment"] == env and f["status"] == "drift")


def of_status(found: list[dict[str, Any]], env: str, status: str) -> list[tuple[str, str]]:
    return sorted((f["finding"], f["object_name"]) for f in found if f["environment"] == env and f["status"] == status)


@pytest.fixture(scope="module")
def demo_prod(emulators: Any) -> dict[str, Any]:
    from envsync.dev.demo import create_demo_prod

    return create_demo_prod(client(), PROJECT, "US", 400, dataset_prefix=NS.prefix)


@pytest.fixture
def setup(demo_prod: Any, config_file: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """No environment, no audit rows, an empty migrations folder; the config of this project."""
    from envsync.core.config import load_config

    for d in client().list_datasets():
        name = NS.logical(d.dataset_id)
        if name and name.startswith(("dev_", "qa_", "staging_", "drill_", "envsync_audit")):
            client().delete_dataset(fq(name), delete_contents=True, not_found_ok=True)
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    monkeypatch.setenv("ENVSYNC_MIGRATIONS_DIR", str(migrations))
    monkeypatch.setenv("ENVSYNC_MASKING_SALT", SALT)
    path = config_file(
        project=NS.virtual_project, state__bucket="envsync-parity-state", tables={"sales.audit_log": {"exclude": True}}
    )
    monkeypatch.setenv("ENVSYNC_CONFIG", str(path))
    yield load_config(path), path, migrations


def runner(config: Any) -> Any:
    from envsync.bigquery.jobs import JobRunner
    from envsync.core.guard import GuardedBigQuery, WriteGuard

    bq = GuardedBigQuery(client(), WriteGuard.from_config(config), config.location)
    return JobRunner(
        bq, dag_id="promote_schema", run_id=f"manual__{uuid.uuid4().hex[:8]}", task_id="apply", timeout=120
    )


def test_parity_after_clean_refreshes_then_drift_expected_migrations_staleness_and_the_alert(
    setup: Any, run_dag: Any, webhook: Webhook
) -> None:
    from envsync.environments.parity import check
    from envsync.migrations.ledger import apply, load_migrations, read_ledger, unapplied

    config, path, migrations = setup
    a = dt.datetime(2026, 11, 21, 2, tzinfo=UTC)

    # 1. a clean reseed of qa and a clean sync of dev: no drift, each checked by its own last task
    reseed = run_dag("reseed_environments", None, {"environments": ["qa"]}, config_path=path)
    assert str(reseed.state) == "success", states(reseed)
    sync = run_dag("prod_to_dev_sync", a, {}, config_path=path)
    assert str(sync.state) == "success", states(sync)
    assert states(sync)["parity[-1]"] == "success"

    after_reseed, after_sync = findings(reseed.run_id), findings(sync.run_id)
    assert {f["environment"] for f in after_reseed} == {"qa"} and {f["environment"] for f in after_sync} == {"dev"}
    assert drift(after_reseed, "qa") == [] and drift(after_sync, "dev") == []
    assert of_status(after_sync, "dev", "expected") == [("missing_object", "sales.audit_log")]
    counted = {f["object_name"]: f for f in after_sync if f["finding"] == "rows"}
    assert sorted(counted) == [
        "marketing.ad_spend",
        "marketing.campaigns",
        "marketing.sessions",
        "sales.customers",
        "sales.orders",
        "sales.orders_flat",
    ]
    assert all(f["status"] == "ok" and f["prod_rows"] == f["env_rows"] > 0 for f in counted.values()), counted
    fresh = [f for f in after_sync if f["finding"] == "freshness"]
    assert len(fresh) == 2 and all(f["status"] == "ok" and f["age_hours"] < 1 for f in fresh)
    cut = fresh[0]["refreshed_cut"]
    assert webhook.posts == [] or not any("*parity*" in p["text"] for p in webhook.posts)
    webhook.posts.clear()

    # 2. a migration promoted to qa through the library; drift made in dev by hand
    (migrations / "0001_add_email.sql").write_text(ADD_EMAIL)
    listed = load_migrations(config)
    apply(
        config,
        runner(config),
        "qa",
        unapplied(listed, read_ledger(config, client()), "qa"),
        files=listed,
        ledger=read_ledger(config, client()),
    )
    for sql in (
        f"alter table `{PROJECT}.dev_sales.customers` drop column country",
        f"create table `{PROJECT}.dev_marketing.notes` (note string)",
        f"create or replace table `{PROJECT}.dev_marketing.ad_spend` as "
        f"select * replace (cast(cost as string) as cost) from `{PROJECT}.dev_marketing.ad_spend`",
    ):
        rows(sql)

    check_run = run_dag("parity", None, {"environments": ["dev", "qa"]}, config_path=path)

    assert str(check_run.state) == "success", states(check_run)
    found = findings(check_run.run_id)
    # re-created by hand, ad_spend also lost prod's description
    assert drift(found, "dev") == [
        ("column_type", "marketing.ad_spend.cost"),
        ("description", "marketing.ad_spend"),
        ("extra_object", "marketing.notes"),
        ("missing_column", "sales.customers.country"),
    ]
    assert drift(found, "qa") == []
    assert {("extra_column", "sales.customers.email"), ("extra_object", "marketing.customer_emails")} <= set(
        of_status(found, "qa", "expected")
    )
    cost = next(f for f in found if f["object_name"] == "marketing.ad_spend.cost")
    assert (cost["prod_value"], cost["env_value"]) == ("NUMERIC", "STRING")
    # the Slack alert: the count, the environments, the top findings, the link
    parity_posts = [p for p in webhook.posts if "*parity*" in p["text"]]
    assert len(parity_posts) == 1 and webhook.paths[-1] == "/services/T000/B000/XXXX"
    text = parity_posts[0]["text"]
    assert text.startswith(":warning: envsync *parity*: 4 unexpected difference(s) from prod on *dev* (")
    assert "dev: 4 drift, 1 expected" in text and "qa: 0 drift, " in text
    assert "• dev extra_object marketing.notes: table " in text
    assert "• dev missing_column sales.customers.country: column country is missing" in text
    assert "/dags/parity/runs/" in text

    # the latest parity per environment (sql/reports/latest_parity.sql)
    latest = {r["environment"]: r for r in rows((REPO_ROOT / "sql" / "reports" / "latest_parity.sql").read_text())}
    assert latest["dev"]["run_id"] == latest["qa"]["run_id"] == check_run.run_id
    assert (latest["dev"]["drift"], latest["qa"]["drift"]) == (4, 0) and latest["qa"]["expected"] >= 2
    assert len(latest["dev"]["drift_findings"]) == 4  # ARRAY_AGG(IF(drift, …, NULL) IGNORE NULLS … LIMIT 20)
    assert "missing_column sales.customers.country: column country is missing" in latest["dev"]["drift_findings"]
    assert latest["qa"]["drift_findings"] == []

    # 3. the same dev nine days later: stale, and its rows cannot be counted as of a T past time travel
    later = check(
        config,
        runner(config),
        environments=["dev"],
        datasets=list(config.prod.datasets),
        now=cut + dt.timedelta(days=9),
    )
    stale = [f for f in later.findings if f.finding == "stale"]
    assert len(stale) == 2 and all(f.status == "drift" and "older than 8 days" in f.detail for f in stale)
    counts = [f for f in later.findings if f.finding == "rows"]
    assert counts and all(
        f.status == "unknown" and "could not be taken" in f.detail and "time-travel window" in f.detail for f in counts
    )
