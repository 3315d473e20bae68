"""Masked copies of prod through Airflow (dag.test) on the emulators: the dev sync and prod-copy of a
prod dataset `crm` with personal data, masked by the table config (`email` hash, `name` fake) and by a
BigQuery policy tag of a configured taxonomy (`phone`).

Assertions are on the tables: no raw value of prod in dev (dev and prod joined on the key), the hashed
email joining across two tables, rows per partition as prod's window, prod's definition kept; and on
the run's report, audit rows and Slack payloads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
import sandbox
from testkit import UTC
from webhookkit import Webhook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NS = sandbox.namespace("envsync-demo")
PROJECT = NS.project
BUCKET_NAME = "envsync-masking-state"
ds, fq = NS.ds, NS.fq
A = dt.datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
SALT = "masking-test-salt-not-a-secret"
TAXONOMY = "projects/envsync-demo/locations/us/taxonomies/7"
PHONE_TAG = f"{TAXONOMY}/policyTags/71"  # masked: its taxonomy is configured
NOTES_TAG = "projects/envsync-demo/locations/us/taxonomies/9/policyTags/91"  # not configured
FIRST = dt.date(2025, 11, 1)  # contact i signed up FIRST + i days


def rows(sql: str, **params: Any) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    from envsync.core.clients import bigquery_client
    from envsync.core.guard import to_query_parameters

    config = bigquery.QueryJobConfig(query_parameters=to_query_parameters(params))
    job = bigquery_client(PROJECT, "US").query(NS.sql(sql), job_config=config, job_retry=None)
    return [dict(r) for r in job.result()]


def client():
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


def sha(value: str) -> str:
    return hashlib.sha256((SALT + value).encode()).hexdigest()  # TO_HEX is lower case


@pytest.fixture(scope="module")
def crm(emulators: Any) -> None:
    """prod `crm`: contacts (DAY-partitioned on signup_date, clustered on contact_id; email, name, phone
    with a configured policy tag, notes with another tag), orders_pii (unpartitioned, one date column),
    events (partitioned, nothing personal) and regions (no date column)."""
    from google.cloud import bigquery

    bq = client()
    dataset = bigquery.Dataset(fq("crm"))
    dataset.location = "US"
    bq.create_dataset(dataset, exists_ok=True)
    statements = [
        """create or replace table `{p}.crm.contacts` (
               contact_id int64 not null, email string, name string, phone string, notes string,
               signup_date date)
           partition by signup_date cluster by contact_id
           options (description = 'people')
           as select id, concat('user', cast(id as string), '@example.com'), concat('Name ', cast(id as string)),
                     if(mod(id, 10) = 0, null, concat('+31-6-', cast(id as string))),
                     concat('note ', cast(id as string)), date_add(date '2025-11-01', interval id day)
           from unnest(generate_array(0, 399)) as id""",
        """create or replace table `{p}.crm.orders_pii` as
           select id as order_id, concat('user', cast(mod(id * 7, 400) as string), '@example.com') as email,
                  date_add(date '2026-01-01', interval id day) as order_date
           from unnest(generate_array(0, 329)) as id""",
        """create or replace table `{p}.crm.events` partition by event_date as
           select id as event_id, date_add(date '2026-01-01', interval id day) as event_date
           from unnest(generate_array(0, 329)) as id""",
        """create or replace table `{p}.crm.regions` as
           select id as region_id, concat('region-', cast(id as string)) as region_name
           from unnest(generate_array(1, 5)) as id""",
    ]
    for sql in statements:
        rows(sql.format(p=PROJECT))
    table = bq.get_table(fq("crm.contacts"))
    fields = [f.to_api_repr() for f in table.schema]
    fields[1]["description"] = "contact's e-mail"
    fields[3]["policyTags"] = {"names": [PHONE_TAG]}
    fields[4]["policyTags"] = {"names": [NOTES_TAG]}
    table.schema = [bigquery.SchemaField.from_api_repr(f) for f in fields]
    bq.update_table(table, ["schema"])


@pytest.fixture
def crm_config(config_file: Any, crm: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ENVSYNC_MASKING_SALT", SALT)
    for name in ("dev_crm", "prodcopy_crm"):
        client().delete_dataset(fq(name), delete_contents=True, not_found_ok=True)

    def _make(tables: dict[str, Any] | None = None, **changes: Any) -> Path:
        masks = {
            "crm.contacts": {"mask": {"email": "hash", "name": "fake"}, "key": ["contact_id"]},
            "crm.orders_pii": {"mask": {"email": "hash"}},
        }
        return config_file(
            **{
                "prod__datasets": ["crm"],
                "state__bucket": BUCKET_NAME,
                "tables": masks if tables is None else tables,
                "privacy": {"policy_tags": [TAXONOMY]},
                **changes,
            }
        )

    return _make


def report(dag_id: str, run_id: str) -> dict[str, Any]:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    store = ManifestStore(storage_client(PROJECT), NS.bucket(BUCKET_NAME))
    return store.read(f"{store.run_prefix(dag_id, run_id)}/report.json")


def states(dag_run: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def exists(dataset: str) -> bool:
    return any(NS.logical(d.dataset_id) == dataset for d in client().list_datasets())


# ---------------------------------------------------------------------------------------------


def test_dev_sync_masks_personal_data_and_clones_the_rest(crm_config: Any, run_dag: Any, webhook: Webhook) -> None:
    dag_run = run_dag("prod_to_dev_sync", A, config_path=crm_config())
    assert str(dag_run.state) == "success", states(dag_run)

    # no raw value of prod in dev: dev and prod joined on the key, in the window
    leaks = rows(f"""
        select
            count(*) as joined,
            countif(d.email = p.email) as email, countif(d.name = p.name) as name,
            countif(d.phone = p.phone) as phone,
            countif(d.email is null or d.name is null) as null_values,
            countif(p.phone is null and d.phone is not null) as phone_invented
        from `{PROJECT}.dev_crm.contacts` as d join `{PROJECT}.crm.contacts` as p using (contact_id)""")[0]
    assert leaks == {"joined": 144, "email": 0, "name": 0, "phone": 0, "null_values": 0, "phone_invented": 0}, leaks
    sample = rows(
        f"select contact_id, email, name, phone from `{PROJECT}.dev_crm.contacts` "
        "where contact_id in (250, 251) order by contact_id"
    )
    assert sample[0]["email"] == sha("user250@example.com")  # salted SHA-256: the configured salt
    assert sample[0]["phone"] is None  # NULL stays NULL
    assert sample[1]["phone"] == sha("+31-6-251")  # the policy tag's default mask: hash
    assert sample[1]["name"].startswith("name-") and "251" not in sample[1]["name"]

    # the hashed email joins across two tables exactly as the raw one does in prod's window
    joined_dev = rows(
        f"select count(*) as n from `{PROJECT}.dev_crm.orders_pii` as o "
        f"join `{PROJECT}.dev_crm.contacts` as c using (email)"
    )[0]["n"]
    joined_prod = rows(f"""select count(*) as n from `{PROJECT}.crm.orders_pii` as o
                           join `{PROJECT}.crm.contacts` as c using (email)
                           where o.order_date >= '2026-07-01' and o.order_date <= '2026-11-21'
                             and c.signup_date >= '2026-07-01' and c.signup_date <= '2026-11-21'""")[0]["n"]
    assert joined_dev == joined_prod > 0

    # rows per partition as prod's window: [2026-07-01, 2026-11-21 02:00) on a DATE = 07-01 .. 11-21
    per_day = {
        r["d"]: r["n"]
        for r in rows(f"select signup_date as d, count(*) as n from `{PROJECT}.dev_crm.contacts` group by d")
    }
    expected = {dt.date(2026, 7, 1) + dt.timedelta(days=i): 1 for i in range(144)}
    assert per_day == expected

    # prod's definition: partitioning, clustering, description, column descriptions and policy tags
    dev, prod = client().get_table(fq("dev_crm.contacts")), client().get_table(fq("crm.contacts"))
    assert (dev.time_partitioning.field, dev.clustering_fields, dev.description) == (
        "signup_date",
        ["contact_id"],
        "people",
    )
    assert [f.to_api_repr() for f in dev.schema] == [f.to_api_repr() for f in prod.schema]

    # the unmasked tables keep their cheapest path; job kinds in the report
    done = report("prod_to_dev_sync", dag_run.run_id)
    actions = {r["table"]: r["action"] for r in done["results"]}
    assert actions == {
        "crm.contacts": "masked_ctas",
        "crm.orders_pii": "masked_ctas",
        "crm.events": "clone_window",
        "crm.regions": "full_clone",
    }
    assert rows(f"select count(*) as n from `{PROJECT}.dev_crm.regions`")[0]["n"] == 5

    # the privacy report: masked columns and why, the verification's counts, the tagged column left unmasked
    masked = {
        (m["table"], m["column"]): (m["mask"], m["origin"], m["unmasked_rows"]) for m in done["privacy"]["masked"]
    }
    assert masked == {
        ("crm.contacts", "email"): ("hash", "config", 0),
        ("crm.contacts", "name"): ("fake", "config", 0),
        ("crm.contacts", "phone"): ("hash", "policy_tag", 0),
        ("crm.orders_pii", "email"): ("hash", "config", 0),
    }
    assert done["privacy"]["unmasked_tagged"] == [
        {
            "env": "dev",
            "table": "crm.contacts",
            "target": f"{ds('dev_crm')}.contacts",
            "column": "notes",
            "policy_tags": [NOTES_TAG],
        }
    ]
    audit = rows(
        f"select table_name, column_name, mask, origin, unmasked_rows from `{PROJECT}.envsync_audit.masked_columns` "
        "where run_id = @run_id order by table_name, column_name",
        run_id=dag_run.run_id,
    )
    assert [(r["table_name"], r["column_name"], r["mask"], r["origin"], r["unmasked_rows"]) for r in audit] == [
        ("crm.contacts", "email", "hash", "config", 0),
        ("crm.contacts", "name", "fake", "config", 0),
        ("crm.contacts", "phone", "hash", "policy_tag", 0),
        ("crm.orders_pii", "email", "hash", "config", 0),
    ]
    privacy_alerts = [p["text"] for p in webhook.posts if p["text"].startswith(":warning:")]
    assert len(privacy_alerts) == 1, [p["text"] for p in webhook.posts]
    assert f"unmasked: {ds('dev_crm')}.contacts.notes (policy tags: {NOTES_TAG})" in privacy_alerts[0]


def test_dry_run_shows_the_bytes_the_masked_copies_bill(crm_config: Any, run_dag: Any) -> None:
    dag_run = run_dag("prod_to_dev_sync", A, {"dry_run": True}, config_path=crm_config())
    assert str(dag_run.state) == "success", states(dag_run)
    assert not exists("dev_crm")
    planned = {r["table"]: r for r in report("prod_to_dev_sync", dag_run.run_id)["results"]}
    # the masked copy reads the window's partitions (144 of 400) and the check reads copy and prod again
    assert planned["crm.contacts"]["action"] == "masked_ctas"
    assert planned["crm.contacts"]["est_bytes_billed"] > planned["crm.events"]["est_bytes_billed"]
    assert planned["crm.regions"]["est_bytes_billed"] == planned["crm.events"]["est_bytes_billed"] == 2 * 10 * 1024**2


def test_a_missing_salt_fails_before_anything_is_written(
    crm_config: Any, run_dag: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = crm_config()
    monkeypatch.delenv("ENVSYNC_MASKING_SALT")
    dag_run = run_dag("prod_to_dev_sync", A, config_path=config)
    assert str(dag_run.state) == "failed"
    assert states(dag_run)["plan[-1]"] == "failed"
    assert not exists("dev_crm")
    failure = capsys.readouterr().out  # the task log of dag.test
    assert (
        "AirflowFailException: hash/fake masks of ['crm.contacts', 'crm.orders_pii'] need a salt in the "
        "environment variable ENVSYNC_MASKING_SALT"
    ) in failure


def test_a_mask_on_the_discovered_partitioning_column_is_refused_at_plan_time(
    crm_config: Any, run_dag: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config = crm_config(tables={"crm.contacts": {"mask": {"signup_date": "fake"}}})
    dag_run = run_dag("prod_to_dev_sync", A, config_path=config)
    assert str(dag_run.state) == "failed"
    assert not exists("dev_crm")
    assert "crm.contacts: column signup_date is the partitioning column and cannot be masked" in capsys.readouterr().out


def test_a_mask_on_the_date_column_is_refused_at_config_load(crm_config: Any) -> None:
    from envsync.core.config import ConfigError, load_config

    config = crm_config(tables={"crm.contacts": {"date_column": "signup_date", "mask": {"signup_date": "null"}}})
    with pytest.raises(ConfigError, match="tables.crm.contacts: mask: column 'signup_date' is the date_column"):
        load_config(config)


def test_prod_copy_is_exact_unless_privacy_lists_it(crm_config: Any, run_dag: Any) -> None:
    exact = run_dag("prod_copy", None, {}, config_path=crm_config())
    assert str(exact.state) == "success", states(exact)
    raw = rows(
        f"select count(*) as n from `{PROJECT}.prodcopy_crm.contacts` as c join `{PROJECT}.crm.contacts` "
        "as p using (contact_id) where c.email = p.email and c.name = p.name"
    )
    assert raw == [{"n": 400}]
    done = report("prod_copy", exact.run_id)
    assert {r["action"] for r in done["results"]} == {"full_clone"}
    assert done["privacy"]["masked"] == [] and {r["column"] for r in done["privacy"]["unmasked_tagged"]} == {
        "phone",
        "notes",
    }

    listed = run_dag(
        "prod_copy",
        None,
        {},
        config_path=crm_config(
            privacy={"policy_tags": [TAXONOMY], "environments": ["dev", "qa", "staging", "test", "prodcopy"]}
        ),
    )
    assert str(listed.state) == "success", states(listed)
    leaks = rows(f"""select count(*) as joined, countif(c.email = p.email) as email, countif(c.name = p.name) as name,
                            countif(c.phone = p.phone) as phone
                     from `{PROJECT}.prodcopy_crm.contacts` as c
                     join `{PROJECT}.crm.contacts` as p using (contact_id)""")
    assert leaks == [{"joined": 400, "email": 0, "name": 0, "phone": 0}]
    actions = {r["table"]: r["action"] for r in report("prod_copy", listed.run_id)["results"]}
    assert actions == {
        "crm.contacts": "masked_ctas",
        "crm.orders_pii": "masked_ctas",
        "crm.events": "full_clone",
        "crm.regions": "full_clone",
    }
