"""Environment datasets inherit prod's default CMEK key (defaultEncryptionConfiguration.kmsKeyName).
https://cloud.google.com/bigquery/docs/customer-managed-encryption#dataset_default_key"""

from __future__ import annotations

from unittest import mock

import pytest
from google.api_core.exceptions import Conflict, NotFound
from google.cloud import bigquery

from envsync.bigquery.datasets import DatasetLocationError, default_kms_key, ensure_env_dataset, recreate_env_dataset
from envsync.core.guard import GuardedBigQuery, WriteGuard

KEY = "projects/kms-proj/locations/us/keyRings/envsync/cryptoKeys/prod"


def guarded(client: mock.Mock) -> GuardedBigQuery:
    return GuardedBigQuery(client, WriteGuard("envsync-demo", ["sales"], ["dev_"]), "US")


def test_a_new_environment_dataset_gets_prods_default_key() -> None:
    client = mock.Mock()
    client.get_dataset.side_effect = NotFound("no dataset")
    assert (
        ensure_env_dataset(
            guarded(client), "envsync-demo.dev_sales", location="US", description=None, labels={}, kms_key_name=KEY
        )
        == "created"
    )
    created = client.create_dataset.call_args.args[0]
    assert created.default_encryption_configuration.kms_key_name == KEY
    assert created.to_api_repr()["defaultEncryptionConfiguration"] == {"kmsKeyName": KEY}


def test_an_existing_environment_dataset_is_brought_to_prods_key() -> None:
    client = mock.Mock()
    existing = bigquery.Dataset("envsync-demo.dev_sales")
    existing.location, existing.max_time_travel_hours = "US", 48
    client.get_dataset.return_value = existing
    assert (
        ensure_env_dataset(
            guarded(client), "envsync-demo.dev_sales", location="US", description=None, labels={}, kms_key_name=KEY
        )
        == "updated"
    )
    dataset, fields = client.update_dataset.call_args.args
    assert fields == ["default_encryption_configuration"]
    assert dataset.default_encryption_configuration.kms_key_name == KEY


def test_a_dataset_another_run_creates_meanwhile_is_checked_not_failed() -> None:
    """Two runs (two parity runs, two Airflows) both find the audit dataset missing; the second
    create gets 409 Already Exists and goes on with the dataset the first one made."""
    client = mock.Mock()
    made = bigquery.Dataset("envsync-demo.dev_sales")
    made.location, made.max_time_travel_hours = "US", 48
    client.get_dataset.side_effect = [NotFound("no dataset"), made]
    client.create_dataset.side_effect = Conflict("Already Exists: Dataset envsync-demo:dev_sales")
    outcome = ensure_env_dataset(guarded(client), "envsync-demo.dev_sales", location="US", description=None, labels={})
    assert outcome == "unchanged"
    assert client.get_dataset.call_count == 2


def test_a_dataset_another_run_made_in_another_location_is_still_refused() -> None:
    client = mock.Mock()
    made = bigquery.Dataset("envsync-demo.dev_sales")
    made.location = "EU"
    client.get_dataset.side_effect = [NotFound("no dataset"), made]
    client.create_dataset.side_effect = Conflict("Already Exists")
    with pytest.raises(DatasetLocationError, match="is in EU but its prod dataset is in US"):
        ensure_env_dataset(guarded(client), "envsync-demo.dev_sales", location="US", description=None, labels={})


def test_without_a_prod_key_no_encryption_is_set() -> None:
    client = mock.Mock()
    client.get_dataset.side_effect = NotFound("no dataset")
    ensure_env_dataset(guarded(client), "envsync-demo.dev_sales", location="US", description=None, labels={})
    assert "defaultEncryptionConfiguration" not in client.create_dataset.call_args.args[0].to_api_repr()


def test_a_recreated_dataset_gets_prods_default_key() -> None:
    client = mock.Mock()
    recreate_env_dataset(
        guarded(client), "envsync-demo.dev_sales", location="US", description=None, labels={}, kms_key_name=KEY
    )
    assert client.create_dataset.call_args.args[0].default_encryption_configuration.kms_key_name == KEY


def test_default_kms_key_reads_the_prod_datasets_setting() -> None:
    client = mock.Mock()
    prod = bigquery.Dataset("envsync-demo.sales")
    client.get_dataset.return_value = prod
    assert default_kms_key(client, "envsync-demo.sales") is None
    prod.default_encryption_configuration = bigquery.EncryptionConfiguration(kms_key_name=KEY)
    assert default_kms_key(client, "envsync-demo.sales") == KEY
