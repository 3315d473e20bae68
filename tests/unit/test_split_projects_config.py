"""Environments in their own projects (README "Environments in their own projects"): the config's
projects, what it refuses at load (naming the keys), and the write guard of a split layout."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any
from unittest import mock

import pytest
from google.cloud import bigquery

from envsync.core.config import ConfigError, parse_config
from envsync.core.guard import GuardedBigQuery, ProdWriteRefused, TableRef, WriteGuard, WriteTarget, confirmation_phrase

PROD = "acme-prod"
NONPROD = "acme-nonprod"
DEV = "acme-dev"
BACKUP = "acme-backup"


def split() -> dict[str, Any]:
    return {
        "project": NONPROD,
        "prod": {"project": PROD, "datasets": ["sales", "marketing"]},
        "environments": {
            "dev": {"prefix": "", "project": DEV, "jobs_project": NONPROD},
            "backup": {"project": BACKUP},
            "drill": {"project": BACKUP},
        },
        "state": {"bucket": "acme-envsync-state"},
    }


def load(data: dict[str, Any]):
    return parse_config(data, "split.yaml")


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load(data)
    return str(info.value)


def test_one_project_config_resolves_every_environment_to_it() -> None:
    config = load({"project": "envsync-demo", "prod": {"datasets": ["sales"]}, "state": {"bucket": "b-state"}})
    assert config.prod_project == config.audit_project == config.state_project == "envsync-demo"
    assert {config.project_of(env) for env in ("dev", "qa", "staging", "test", "prodcopy", "backup", "drill")} == {
        "envsync-demo"
    }
    assert config.jobs_project_of("dev") == "envsync-demo"
    assert not config.split
    assert config.qualified("envsync-demo", "dev_sales", "orders") == "dev_sales.orders"


def test_split_layout_resolves_projects_and_jobs_projects() -> None:
    config = load(split())
    assert config.prod_project == PROD
    assert config.project_of("prod") == PROD
    assert config.project_of("dev") == DEV
    assert config.jobs_project_of("dev") == NONPROD  # dev's jobs are billed to the non-prod project
    assert config.project_of("qa") == config.jobs_project_of("qa") == NONPROD
    assert config.project_of("backup") == config.project_of("drill") == BACKUP
    assert config.jobs_project_of("prod") == PROD
    assert config.source_project("staging") == NONPROD
    assert config.audit_project == config.state_project == NONPROD
    assert config.env_dataset("dev", "sales") == "sales"  # acme-dev.sales mirrors acme-prod.sales
    assert config.split
    assert config.projects() == [PROD, NONPROD, DEV, BACKUP]
    assert config.qualified(DEV, "sales", "orders") == "acme-dev.sales.orders"


def test_empty_prefix_in_prods_project_is_refused_naming_the_key() -> None:
    data = split()
    data["prod"].pop("project")
    data["environments"]["dev"] = {"prefix": "", "project": NONPROD}  # prod's project is then acme-nonprod
    message = refused(data)
    assert "environments.dev.prefix" in message
    assert "prod's own datasets" in message


@pytest.mark.parametrize("env", ["test", "backup", "drill"])
def test_empty_prefix_only_for_environments_mirroring_prod(env: str) -> None:
    data = split()
    data["environments"][env] = {"prefix": "", "project": "acme-other"}
    message = refused(data)
    assert f"environments.{env}.prefix" in message
    assert "dev, qa, staging, prodcopy" in message


def test_two_environments_resolving_to_one_project_and_dataset_are_refused() -> None:
    data = split()
    data["environments"]["qa"] = {"prefix": "", "project": DEV}  # dev and qa both: acme-dev.sales
    message = refused(data)
    assert "environments.qa" in message and "environments.dev" in message
    assert "'sales'" in message and "'acme-dev'" in message


def test_staging_with_an_empty_prefix_collides_with_prods_backups() -> None:
    data = split()
    data["environments"]["staging"] = {"prefix": "", "project": "acme-staging"}
    message = refused(data)  # backup_<ds> of staging would be backup_<ds> of prod, in acme-backup
    assert "environments.backup" in message and "'acme-backup'" in message


def test_prefixes_may_repeat_in_different_projects_but_not_in_one() -> None:
    data = split()
    data["environments"]["qa"] = {"prefix": "dev_"}  # dev is in acme-dev: no overlap
    assert load(data).env_dataset("qa", "sales") == "dev_sales"
    data["environments"]["dev"] = {"prefix": "dev_", "project": NONPROD}
    message = refused(data)
    assert "environment prefixes must not overlap" in message
    assert "environments.dev.prefix" in message and "environments.qa.prefix" in message


def test_audit_dataset_and_state_bucket_do_not_default_into_prods_project() -> None:
    data = split()
    data["project"] = PROD  # everything not configured would land in prod's project
    for env in ("qa", "staging", "test", "prodcopy"):
        data["environments"][env] = {"project": NONPROD}
    message = refused(data)
    assert "audit.project" in message and "'acme-prod'" in message
    data["audit"] = {"project": NONPROD}
    message = refused(data)
    assert "state.project" in message
    data["state"]["project"] = PROD  # explicit: accepted
    config = load(data)
    assert config.state_project == PROD and config.audit_project == NONPROD


def test_audit_dataset_may_not_be_an_environment_dataset_of_its_project() -> None:
    data = split()
    data["audit"] = {"dataset": "qa_audit"}
    assert "audit.dataset 'qa_audit'" in refused(data)
    data["audit"] = {"dataset": "qa_audit", "project": BACKUP}  # no qa_ environment in acme-backup
    assert load(data).audit_project == BACKUP


def test_bad_project_names_are_refused_naming_the_key() -> None:
    data = split()
    data["environments"]["dev"]["jobs_project"] = "Bad_Project"
    message = refused(data)
    assert "environments.dev.jobs_project" in message and "Bad_Project" in message


# ----- the write guard of a split layout -------------------------------------------------------


@pytest.fixture
def guard() -> WriteGuard:
    return WriteGuard.from_config(load(split()))


@pytest.mark.parametrize(
    "target",
    [
        WriteTarget(DEV, "sales", "orders"),  # dev mirrors prod's names in its own project
        WriteTarget(DEV, "marketing"),
        WriteTarget(NONPROD, "qa_sales", "orders"),
        WriteTarget(NONPROD, "test_x_sales", "orders"),
        WriteTarget(NONPROD, "envsync_audit", "runs"),
        WriteTarget(BACKUP, "backup_sales", "orders__snap"),
        WriteTarget(BACKUP, "drill_staging_sales", "orders"),
    ],
)
def test_guard_allows_each_environment_in_its_project(guard: WriteGuard, target: WriteTarget) -> None:
    guard.check(target, "write")


@pytest.mark.parametrize(
    ("target", "words"),
    [
        (WriteTarget(PROD, "sales", "orders"), "is a prod dataset"),
        (WriteTarget(PROD, "sales"), "is a prod dataset"),
        (WriteTarget(PROD, "dev_sales", "orders"), "has no environment prefix of project 'acme-prod'"),
        (WriteTarget(DEV, "raw", "orders"), "has no environment prefix of project 'acme-dev'"),
        (WriteTarget(DEV, "qa_sales", "orders"), "has no environment prefix of project 'acme-dev'"),
        (WriteTarget(NONPROD, "sales", "orders"), "has no environment prefix of project 'acme-nonprod'"),
        (WriteTarget(BACKUP, "envsync_audit", "runs"), "has no environment prefix of project 'acme-backup'"),
        (WriteTarget("acme-elsewhere", "dev_sales", "orders"), "only writes to projects"),
    ],
)
def test_guard_refuses_prod_and_everything_unconfigured(guard: WriteGuard, target: WriteTarget, words: str) -> None:
    with pytest.raises(ProdWriteRefused, match=words):
        guard.check(target, "write")


def test_guard_refuses_before_any_request() -> None:
    client = mock.Mock(spec=bigquery.Client)
    bq = GuardedBigQuery(client, WriteGuard.from_config(load(split())), "US")
    for ref in (TableRef(PROD, "sales", "orders"), TableRef("acme-elsewhere", "dev_sales", "orders")):
        with pytest.raises(ProdWriteRefused):
            bq.delete_table(ref)
        with pytest.raises(ProdWriteRefused):
            bq.start_query(f"CREATE OR REPLACE TABLE {ref.sql} AS SELECT 1 AS x", job_id="j", labels={})
        with pytest.raises(ProdWriteRefused):
            bq.copy_table(
                TableRef(DEV, "sales", "orders"), ref, write_disposition="WRITE_TRUNCATE", job_id="j", labels={}
            )
    assert client.mock_calls == []


def test_statement_defaults_resolve_in_prods_project_and_are_refused(guard: WriteGuard) -> None:
    with pytest.raises(ProdWriteRefused, match="is a prod dataset"):
        guard.check_statement("DELETE FROM sales.orders WHERE TRUE")  # unqualified: prod's project


def test_confirmed_restore_opens_only_prods_tables_of_that_dataset(guard: WriteGuard) -> None:
    when = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    restore = guard.for_prod_restore("sales", when, confirmation_phrase("sales", when))
    restore.check(WriteTarget(PROD, "sales", "orders"), "restore into")
    restore.check(WriteTarget(DEV, "sales", "orders"), "write")  # the environments stay writable
    with pytest.raises(ProdWriteRefused):
        restore.check(WriteTarget(PROD, "sales"), "update dataset")
    with pytest.raises(ProdWriteRefused):
        restore.check(WriteTarget(PROD, "marketing", "sessions"), "restore into")


def test_audit_only_guard_in_the_audit_project(guard: WriteGuard) -> None:
    audit = guard.audit_only((NONPROD, "envsync_audit"))
    audit.check(WriteTarget(NONPROD, "envsync_audit", "parity"), "write")
    with pytest.raises(ProdWriteRefused, match="may write nothing but"):
        audit.check(WriteTarget(NONPROD, "qa_sales", "orders"), "write")


def test_a_copy_of_the_example_is_independent() -> None:
    data = split()
    copy.deepcopy(data)["environments"]["dev"]["project"] = "acme-x"
    assert load(data).project_of("dev") == DEV
