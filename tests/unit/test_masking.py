"""Masks outside prod samples (envsync.privacy.masking and its use by config, plan, verify, report, audit,
alerts): which columns are masked where, what is refused and why, and what the dry run says. Pure."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlglot

from envsync.bigquery.discovery import DatasetInfo, TableInfo
from envsync.core.config import ConfigError, EnvsyncConfig, parse_config
from envsync.core.window import quarter_window
from envsync.privacy.masking import (
    ColumnMask,
    MaskError,
    column_masks,
    masked_select,
    masks_from_dicts,
    unmasked_tagged,
)
from envsync.sync.plan import MIN_BYTES_BILLED_PER_TABLE, PlanError, plan_dataset

UTC = dt.UTC
SALT_ENV = "ENVSYNC_MASKING_SALT"
TAXONOMY = "projects/acme-data/locations/us/taxonomies/7"
PHONE_TAG = f"{TAXONOMY}/policyTags/71"
OTHER_TAG = "projects/acme-data/locations/us/taxonomies/9/policyTags/91"
WINDOW = quarter_window(dt.datetime(2026, 11, 21, 2, tzinfo=UTC), 2)


def make_config(tables: dict[str, Any] | None = None, **extra: Any) -> EnvsyncConfig:
    return parse_config(
        {
            "project": "acme-data",
            "prod": {"datasets": ["crm"]},
            "tables": tables or {},
            "state": {"bucket": "acme-state"},
            **extra,
        }
    )


def config_error(**extra: Any) -> str:
    with pytest.raises(ConfigError) as info:
        make_config(**extra)
    return str(info.value)


def col(
    name: str,
    kind: str = "STRING",
    mode: str = "NULLABLE",
    tags: list[str] | None = None,
    fields: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": kind, "mode": mode}
    if tags:
        out["policyTags"] = {"names": tags}
    if fields:
        out["fields"] = fields
    return out


def contacts(**kw: Any) -> TableInfo:
    schema = [
        col("contact_id", "INTEGER", "REQUIRED"),
        col("email"),
        col("name"),
        col("phone", tags=[PHONE_TAG]),
        col("notes", tags=[OTHER_TAG]),
        col("signup_date", "DATE"),
    ]
    defaults = dict(
        partitioning={"type": "DAY", "field": "signup_date"},
        clustering=["contact_id"],
        num_rows=400,
        num_bytes=400 * 1024**2,
    )
    return TableInfo(dataset="crm", table="contacts", kind="TABLE", schema=schema, **{**defaults, **kw})


MASKED = {"crm.contacts": {"mask": {"email": "hash", "name": "fake"}, "key": ["contact_id"]}}
PRIVACY = {"policy_tags": [TAXONOMY]}


# ------------------------------------------------------------------------------------- config


def test_privacy_defaults_mask_dev_and_samples_but_not_prod_copy() -> None:
    config = make_config()
    assert config.privacy.environments == ["dev", "qa", "staging", "test"]
    assert [config.masks_apply(e) for e in ("dev", "qa", "staging", "test", "prodcopy")] == [True] * 4 + [False]
    assert (config.privacy.policy_tags, config.privacy.policy_tag_mask, config.salt_env) == ([], "hash", SALT_ENV)
    assert make_config(privacy={"salt_env": "OTHER_SALT"}).salt_env == "OTHER_SALT"


@pytest.mark.parametrize(
    "privacy, expected",
    [
        ({"policy_tags": ["pii"]}, "privacy.policy_tags: 'pii' is not a policy tag or taxonomy resource name"),
        (
            {"environments": ["dev", "backup"]},
            "privacy.environments.1: Input should be 'dev', 'qa', 'staging', 'test' or 'prodcopy'",
        ),
        ({"policy_tag_mask": "scramble"}, "privacy.policy_tag_mask: Input should be 'hash', 'null' or 'fake'"),
        ({"salt_env": "my-salt"}, "privacy.salt_env: 'my-salt' is not an environment variable name"),
    ],
)
def test_bad_privacy_settings_name_the_key(privacy: dict[str, Any], expected: str) -> None:
    assert expected in config_error(privacy=privacy)


def test_a_mask_on_the_date_column_is_refused_at_config_load_with_the_reason() -> None:
    message = config_error(tables={"crm.contacts": {"date_column": "signup_date", "mask": {"signup_date": "fake"}}})
    assert "tables.crm.contacts: mask: column 'signup_date' is the date_column" in message
    assert "move rows between partitions and out of the window" in message


def test_a_key_column_cannot_be_masked() -> None:
    message = config_error(tables={"crm.contacts": {"key": ["email"], "mask": {"email": "hash"}}})
    assert "tables.crm.contacts: mask: key columns ['email'] cannot be masked" in message


# ------------------------------------------------------------------------------- column masks


def test_config_masks_and_configured_policy_tags_in_prod_column_order() -> None:
    config = make_config(MASKED, privacy=PRIVACY)
    masks = column_masks(config, contacts(), "dev")
    assert [(m.column, m.kind, m.origin) for m in masks] == [
        ("email", "hash", "config"),
        ("name", "fake", "config"),
        ("phone", "hash", "policy_tag"),
    ]
    assert masks[2].policy_tags == [PHONE_TAG]
    # the other taxonomy's column is copied unmasked, and reported
    assert unmasked_tagged(contacts(), masks) == {"notes": [OTHER_TAG]}


def test_an_exact_policy_tag_matches_and_the_default_mask_kind_applies() -> None:
    config = make_config(privacy={"policy_tags": [PHONE_TAG], "policy_tag_mask": "null"})
    assert [(m.column, m.kind) for m in column_masks(config, contacts(), "dev")] == [("phone", "null")]


def test_a_config_mask_wins_over_the_policy_tag_default() -> None:
    config = make_config({"crm.contacts": {"mask": {"phone": {"fixed": "000"}}}}, privacy=PRIVACY)
    [mask] = column_masks(config, contacts(), "dev")
    assert (mask.column, mask.rule, mask.origin, mask.policy_tags) == ("phone", {"fixed": "000"}, "config", [PHONE_TAG])


def test_masks_apply_only_where_privacy_says() -> None:
    config = make_config(MASKED, privacy=PRIVACY)
    assert column_masks(config, contacts(), "prodcopy") == []
    listed = make_config(MASKED, privacy={**PRIVACY, "environments": ["prodcopy"]})
    assert len(column_masks(listed, contacts(), "prodcopy")) == 3 and column_masks(listed, contacts(), "dev") == []


@pytest.mark.parametrize(
    "column, why", [("signup_date", "the partitioning column"), ("contact_id", "a clustering column")]
)
def test_a_mask_on_a_discovered_partitioning_or_clustering_column_is_refused(column: str, why: str) -> None:
    config = make_config({"crm.contacts": {"mask": {column: "null" if column == "signup_date" else "fake"}}})
    with pytest.raises(MaskError, match=f"crm.contacts: column {column} is {why} and cannot be masked"):
        column_masks(config, contacts(), "dev")


def test_a_policy_tag_on_the_partitioning_column_is_refused_too() -> None:
    info = contacts(partitioning={"type": "DAY", "field": "signup_date"})
    info.schema[5]["policyTags"] = {"names": [PHONE_TAG]}
    with pytest.raises(MaskError, match=r"column signup_date is the partitioning column .*policy tags \["):
        column_masks(make_config(privacy=PRIVACY), info, "dev")


def test_a_tagged_nested_field_is_refused_and_an_untagged_taxonomy_is_only_reported() -> None:
    info = contacts()
    info.schema.append(col("address", "RECORD", fields=[col("street", tags=[PHONE_TAG])]))
    with pytest.raises(MaskError, match=r"nested field\(s\) \['address.street'\] carry a policy tag"):
        column_masks(make_config(privacy=PRIVACY), info, "dev")
    info.schema[-1]["fields"][0]["policyTags"] = {"names": [OTHER_TAG]}
    assert unmasked_tagged(info, column_masks(make_config(privacy=PRIVACY), info, "dev")) == {
        "notes": [OTHER_TAG],
        "address.street": [OTHER_TAG],
    }


def test_missing_columns_and_rules_that_do_not_fit_the_type_are_refused_at_plan_time() -> None:
    with pytest.raises(MaskError, match=r"tables.crm.contacts.mask: column\(s\) \['mail'\] do not exist"):
        column_masks(make_config({"crm.contacts": {"mask": {"mail": "hash"}}}), contacts(), "dev")
    with pytest.raises(MaskError, match="crm.contacts: mask of column contact_id .*hash applies to STRING"):
        column_masks(make_config({"crm.contacts": {"mask": {"contact_id": "hash"}}}), contacts(clustering=None), "dev")


def test_masked_select_binds_the_salt_and_names_the_variable_when_it_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(MASKED, privacy=PRIVACY)
    masks = column_masks(config, contacts(), "dev")
    monkeypatch.delenv(SALT_ENV, raising=False)
    with pytest.raises(MaskError, match=f"need a salt in the environment variable {SALT_ENV} \\(seeds.salt_env\\)"):
        masked_select(config, contacts(), masks)
    monkeypatch.setenv(SALT_ENV, "s3cret")
    select, params = masked_select(config, contacts(), masks)
    assert params == {"mask_salt": "s3cret"} and "s3cret" not in select
    tree = sqlglot.parse_one(f"select {select} from t", read="bigquery")
    assert [e.alias_or_name for e in tree.selects] == [f["name"] for f in contacts().schema]
    assert select.split(",\n    ")[0] == "`contact_id`" and "sha256(concat(@mask_salt, `phone`))" in select


def test_null_and_fixed_masks_need_no_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SALT_ENV, raising=False)
    config = make_config({"crm.contacts": {"mask": {"email": "null", "name": {"fixed": "N"}}}})
    _, params = masked_select(config, contacts(), column_masks(config, contacts(), "dev"))
    assert params == {"mask_2": "N"}


def test_masks_travel_through_the_manifest_as_json() -> None:
    masks = [ColumnMask("name", {"fixed": "N"}, "config"), ColumnMask("phone", "hash", "policy_tag", [PHONE_TAG])]
    assert masks_from_dicts([m.to_dict() for m in masks]) == masks


# ------------------------------------------------------------------------------------- plan


def dataset(*tables: TableInfo) -> DatasetInfo:
    return DatasetInfo(dataset="crm", location="US", description=None, labels={}, tables=list(tables))


def regions() -> TableInfo:
    return TableInfo(
        dataset="crm", table="regions", kind="TABLE", schema=[col("region_id", "INTEGER")], num_rows=5, num_bytes=100
    )


def test_dev_plan_masks_by_a_windowed_ctas_and_keeps_clones_for_the_rest() -> None:
    config = make_config(MASKED, privacy=PRIVACY)
    ids = [(dt.date(2025, 11, 1) + dt.timedelta(days=i)).strftime("%Y%m%d") for i in range(400)]
    plan = plan_dataset(
        config, dataset(contacts(), regions()), existing=None, window=WINDOW, partition_ids={"contacts": ids}
    )
    masked, clone = plan.actions
    assert (masked.action, masked.date_column, masked.match_key) == ("masked_ctas", "signup_date", ["contact_id"])
    assert [m["column"] for m in masked.masks] == ["email", "name", "phone"]
    assert masked.unmasked_tagged == {"notes": [OTHER_TAG]}
    assert "masked columns email (hash), name (fake), phone (hash, policy tag)" in masked.reason
    assert "instead of clone_window" in masked.reason
    # the masked copy bills the 144 of 400 daily partitions in the window, plus verification and the mask check
    read = 400 * 1024**2 * 144 // 400
    verify = 2 * MIN_BYTES_BILLED_PER_TABLE
    assert masked.est_bytes_billed == read + verify + 2 * read
    assert masked.est_jobs == 4 and "masked copy: bills what it reads of prod" in masked.billing_note
    assert (clone.action, clone.masks, clone.est_bytes_billed) == ("full_clone", [], verify)


def test_a_masked_table_without_a_date_column_is_copied_whole() -> None:
    config = make_config({"crm.regions": {"mask": {"region_id": {"fixed": 0}}, "key": []}})
    info = regions()
    info.schema.append(col("code", "STRING"))
    [action] = plan_dataset(config, dataset(info), existing=None, window=WINDOW).actions
    assert (action.action, action.date_column, action.column_type) == ("masked_ctas", None, None)
    assert "of the whole table as of T instead of full_clone" in action.reason


def test_prod_copy_is_exact_unless_listed() -> None:
    exact = plan_dataset(make_config(MASKED, privacy=PRIVACY), dataset(contacts()), existing=None, env="prodcopy")
    assert exact.actions[0].action == "full_clone" and exact.actions[0].unmasked_tagged == {
        "phone": [PHONE_TAG],
        "notes": [OTHER_TAG],
    }
    listed = make_config(MASKED, privacy={**PRIVACY, "environments": ["dev", "prodcopy"]})
    action = plan_dataset(listed, dataset(contacts()), existing=None, env="prodcopy").actions[0]
    assert (action.action, action.date_column) == ("masked_ctas", None)


def test_every_column_masked_needs_a_key_and_the_key_must_exist() -> None:
    info = TableInfo(dataset="crm", table="emails", kind="TABLE", schema=[col("email")])
    with pytest.raises(PlanError, match="crm.emails: every column is masked; set tables.crm.emails.key"):
        plan_dataset(make_config({"crm.emails": {"mask": {"email": "hash"}}}), dataset(info), existing=None)
    with pytest.raises(PlanError, match=r"tables.crm.contacts.key: column\(s\) \['id'\] do not exist"):
        plan_dataset(
            make_config({"crm.contacts": {"mask": {"email": "hash"}, "key": ["id"]}}),
            dataset(contacts()),
            existing=None,
        )


# ------------------------------------------------------------------- report, audit, alerts


def test_privacy_report_audit_rows_and_slack_warning() -> None:
    from envsync.observe.alerts import build_message
    from envsync.observe.audit import masked_column_rows
    from envsync.observe.report import privacy_report, privacy_table
    from envsync.sync.summary import privacy_entries

    plan = plan_dataset(make_config(MASKED, privacy=PRIVACY), dataset(contacts()), existing=None, window=WINDOW)
    entries = privacy_entries([plan])
    assert [(m["column"], m["mask"], m["origin"]) for m in entries["masked"]] == [
        ("email", "hash", "config"),
        ("name", "fake", "config"),
        ("phone", "hash", "policy_tag"),
    ]
    assert entries["unmasked_tagged"] == [
        {
            "env": "dev",
            "table": "crm.contacts",
            "target": "dev_crm.contacts",
            "column": "notes",
            "policy_tags": [OTHER_TAG],
        }
    ]
    results = [
        {
            "table": "crm.contacts",
            "status": "ok",
            "masked": [{"column": "email", "unmasked_rows": 0}, {"column": "name", "unmasked_rows": 2}],
        }
    ]
    report = privacy_report(entries, results)
    assert [(m["column"], m["unmasked_rows"], m["status"]) for m in report["masked"]] == [
        ("email", 0, "ok"),
        ("name", 2, "ok"),
        ("phone", None, "ok"),
    ]
    text = privacy_table(report, results)
    assert "policy tag 71" in text and "WARNING: dev_crm.contacts.notes carries policy tag(s)" in text

    now = dt.datetime(2026, 11, 21, 3, tzinfo=UTC)
    rows = masked_column_rows(dag_id="prod_to_dev_sync", run_id="r1", privacy=report, now=now)
    assert [(r["column_name"], r["mask"], r["origin"], r["policy_tags"], r["unmasked_rows"]) for r in rows] == [
        ("email", "hash", "config", None, 0),
        ("name", "fake", "config", None, 2),
        ("phone", "hash", "policy_tag", PHONE_TAG, None),
    ]

    message = build_message(
        kind="privacy",
        dag_id="prod_to_dev_sync",
        run_id="r1",
        report={"privacy": report, "params": {"datasets": ["crm"]}},
        duration=None,
        url="http://airflow/x",
        failed_tasks=[],
    )
    assert message["text"].startswith(
        ":warning: envsync *prod_to_dev_sync* copied 1 policy-tagged column(s) UNMASKED to *dev*"
    )
    assert f"unmasked: dev_crm.contacts.notes (policy tags: {OTHER_TAG})" in message["text"]


def test_check_salt_only_for_planned_hash_or_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    from envsync.sync.run import check_salt

    monkeypatch.delenv(SALT_ENV, raising=False)
    nulls = make_config({"crm.contacts": {"mask": {"email": "null"}}})
    check_salt(nulls, [plan_dataset(nulls, dataset(contacts()), existing=None)])
    hashed = make_config(MASKED)
    with pytest.raises(MaskError, match=r"masks of \['crm.contacts'\] need a salt"):
        check_salt(hashed, [plan_dataset(hashed, dataset(contacts()), existing=None)])


def test_the_verification_matches_rows_on_the_key_or_a_hash_of_the_unmasked_columns() -> None:
    from envsync.bigquery.verify import match_key_sql

    assert match_key_sql(contacts(), ["contact_id"], {"email"}) == "to_json_string(struct(`contact_id`))"
    assert match_key_sql(contacts(), [], {"email", "name", "phone"}) == (
        "farm_fingerprint(to_json_string(struct(`contact_id`, `notes`, `signup_date`)))"
    )


def test_reseed_privacy_lists_the_masks_of_prod_samples_per_environment() -> None:
    from envsync.environments.reseed import ReseedUnit, TableSource, reseed_privacy

    config = make_config(
        {
            "crm.contacts": {
                "source": "prod_sample",
                "sample": {"key": "contact_id", "modulo": 4},
                "mask": {"email": "hash"},
            }
        },
        privacy={**PRIVACY, "environments": ["qa"]},
    )
    units = [ReseedUnit("qa", "crm", "qa_crm"), ReseedUnit("staging", "crm", "staging_crm")]
    sources = {"crm": [TableSource("contacts", "prod_sample"), TableSource("regions", "seed")]}
    report = reseed_privacy(config, units, {"crm": dataset(contacts(), regions())}, sources)
    assert [(m["env"], m["target"], m["column"], m["origin"]) for m in report["masked"]] == [
        ("qa", "qa_crm.contacts", "email", "config"),
        ("qa", "qa_crm.contacts", "phone", "policy_tag"),
    ]
    # staging is not in privacy.environments: its sample is unmasked, and its tagged columns are reported
    assert [(u["env"], u["column"]) for u in report["unmasked_tagged"]] == [
        ("qa", "notes"),
        ("staging", "notes"),
        ("staging", "phone"),
    ]


def test_the_run_notifier_sends_privacy_warnings_and_refuses_unknown_kinds() -> None:
    from envsync.observe.alerts import EnvsyncSlackNotifier

    assert EnvsyncSlackNotifier(kind="privacy", slack_webhook_conn_id="slack_envsync").kind == "privacy"
    with pytest.raises(ValueError, match="'drift'"):
        EnvsyncSlackNotifier(kind="drift", slack_webhook_conn_id="slack_envsync")
