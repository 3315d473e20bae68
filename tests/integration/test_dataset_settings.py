"""Prod dataset settings that derived environments must follow, on the emulators:
- an environment dataset inherits prod's default CMEK key (defaultEncryptionConfiguration.kmsKeyName,
  https://cloud.google.com/bigquery/docs/customer-managed-encryption#dataset_default_key);
- the sync plan reports a prod table's row-level access policies (rowAccessPolicies.list), which travel
  with clones and are not carried by CTAS copies
  (https://cloud.google.com/bigquery/docs/using-row-level-security-with-features, "Copy jobs")."""

from __future__ import annotations

from typing import Any

import pytest
import sandbox
from testkit import PROJECT, bq_client, ds, fq, query

pytestmark = pytest.mark.integration

KEY = "projects/envsync-kms/locations/us/keyRings/envsync/cryptoKeys/prod"


@pytest.mark.skipif(sandbox.ON_GCP, reason="needs a real Cloud KMS key the sandbox project may use")
def test_a_dev_dataset_gets_prods_default_encryption_key(clean_dev: None) -> None:
    from google.cloud import bigquery

    from envsync.bigquery.datasets import ensure_env_dataset, env_labels
    from envsync.core.config import load_config
    from envsync.core.guard import GuardedBigQuery, WriteGuard
    from envsync.sync.run import build_plans

    client = bq_client()
    config = load_config()
    prod = client.get_dataset(fq("marketing"))
    prod.default_encryption_configuration = bigquery.EncryptionConfiguration(kms_key_name=KEY)
    client.update_dataset(prod, ["default_encryption_configuration"])
    try:
        (plan,) = build_plans(config, client, datasets=[ds("marketing")], tables=[])
        assert plan.kms_key_name == KEY

        bq = GuardedBigQuery(client, WriteGuard.from_config(config), "US")
        ref = f"{PROJECT}.{plan.target_dataset}"
        assert (
            ensure_env_dataset(
                bq,
                ref,
                location=plan.location,
                description=plan.description,
                labels=env_labels(plan.labels, "dev", plan.dataset),
                kms_key_name=plan.kms_key_name,
            )
            == "created"
        )
        assert client.get_dataset(ref).default_encryption_configuration.kms_key_name == KEY
    finally:
        prod = client.get_dataset(fq("marketing"))
        prod.default_encryption_configuration = None
        client.update_dataset(prod, ["default_encryption_configuration"])


def test_the_sync_plan_reports_row_access_policies_of_prod_tables(prod: dict[str, Any]) -> None:
    from envsync.core.config import load_config
    from envsync.sync.run import build_plans

    client = bq_client()
    logical = f"`{PROJECT}.sales.rap_probe`"  # query() maps the dataset names itself
    query(f"create or replace table {logical} as select 1 as id")
    query(f"create row access policy all_rows on {logical} grant to ('allAuthenticatedUsers') filter using (true)")
    try:
        (plan,) = build_plans(load_config(), client, datasets=[ds("sales")], tables=["rap_probe"])
        (action,) = plan.actions
        assert action.action == "full_clone" and action.row_access_policies == ["all_rows"]
        assert "row access policies (all_rows) travel with the clone" in action.reason
        others = [t for name, t in plan.tables.items() if name != "rap_probe"]
        assert others and all(t.row_access_policies == [] for t in others)
    finally:
        client.delete_table(fq("sales.rap_probe"), not_found_ok=True)
