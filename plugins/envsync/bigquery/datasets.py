"""Create, update and re-create environment datasets (all writes through the guarded client).

An environment dataset mirrors its prod dataset's location, description and labels, and carries
envsync's own labels (`envsync-managed`, `envsync-env`, `envsync-source`, ...). When the prod dataset has
a default customer-managed encryption key (`defaultEncryptionConfiguration.kmsKeyName`), the environment
dataset gets the same default key, so tables envsync creates there by CTAS or DDL are encrypted like
prod's (clones and snapshots keep their source table's key anyway). The key is a full resource name
(`projects/<project>/locations/…/cryptoKeys/…`), often of a key project of its own: it is copied as
it is onto the environment's dataset, in whichever project that dataset lives.
https://cloud.google.com/bigquery/docs/customer-managed-encryption#dataset_default_key
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from envsync.bigquery.jobs import label_value

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.core.guard import GuardedBigQuery

log = logging.getLogger(__name__)

MAX_TIME_TRAVEL_HOURS = 48


class DatasetLocationError(RuntimeError):
    """An environment dataset exists in another location than its prod dataset."""


def env_labels(prod_labels: dict[str, str], env: str, source: str, **extra: str) -> dict[str, str]:
    labels = {**prod_labels, "envsync-managed": "true", "envsync-env": env, "envsync-source": label_value(source)}
    labels.update({key: label_value(value) for key, value in extra.items()})
    return labels


def default_kms_key(client: bigquery.Client, ref: str) -> str | None:
    """The default CMEK key (kms key name) of dataset `ref` (a prod dataset), or None."""
    config = client.get_dataset(ref).default_encryption_configuration
    return getattr(config, "kms_key_name", None) or None


def _encryption(kms_key_name: str):
    from google.cloud import bigquery

    return bigquery.EncryptionConfiguration(kms_key_name=kms_key_name)


def _new_dataset(
    ref: str,
    location: str,
    description: str | None,
    labels: dict[str, str],
    table_expiration_ms: int | None,
    kms_key_name: str | None = None,
):
    from google.cloud import bigquery

    dataset = bigquery.Dataset(ref)
    if kms_key_name:
        dataset.default_encryption_configuration = _encryption(kms_key_name)
    dataset.location = location
    dataset.description = description
    dataset.labels = labels
    dataset.max_time_travel_hours = MAX_TIME_TRAVEL_HOURS
    if table_expiration_ms:
        dataset.default_table_expiration_ms = table_expiration_ms
    return dataset


def ensure_env_dataset(
    bq: GuardedBigQuery,
    ref: str,
    *,
    location: str,
    description: str | None,
    labels: dict[str, str],
    kms_key_name: str | None = None,
) -> str:
    """Create the dataset when missing, else bring its metadata in line; returns what was done.

    `kms_key_name`: the prod dataset's default CMEK key, set as this dataset's default key."""
    from google.api_core.exceptions import Conflict, NotFound

    try:
        existing = bq.client.get_dataset(ref)
    except NotFound:
        try:
            bq.create_dataset(_new_dataset(ref, location, description, labels, None, kms_key_name))
        except Conflict:
            # another run (a concurrent DAG, another Airflow) created it between the read and the
            # create: it exists now, so it is checked and brought in line like any existing dataset
            log.info("dataset %s was created by another run meanwhile; checking its metadata", ref)
            existing = bq.client.get_dataset(ref)
        else:
            log.info(
                "created dataset %s in %s%s",
                ref,
                location,
                f" with prod's default encryption key {kms_key_name}" if kms_key_name else "",
            )
            return "created"
    if (existing.location or "").upper() != (location or "").upper():
        raise DatasetLocationError(
            f"dataset {ref} is in {existing.location} but its prod dataset is in {location}; "
            "drop it so envsync can re-create it in the right location"
        )
    changed = []
    if existing.description != description:
        existing.description = description
        changed.append("description")
    if any((existing.labels or {}).get(k) != v for k, v in labels.items()):
        existing.labels = labels
        changed.append("labels")
    if existing.max_time_travel_hours not in (MAX_TIME_TRAVEL_HOURS, str(MAX_TIME_TRAVEL_HOURS)):
        existing.max_time_travel_hours = MAX_TIME_TRAVEL_HOURS
        changed.append("max_time_travel_hours")
    current_key = getattr(existing.default_encryption_configuration, "kms_key_name", None)
    if kms_key_name and current_key != kms_key_name:
        existing.default_encryption_configuration = _encryption(kms_key_name)
        changed.append("default_encryption_configuration")
    if changed:
        bq.update_dataset(existing, changed)
        log.info("updated %s of dataset %s to match prod", ", ".join(changed), ref)
    return "updated" if changed else "unchanged"


def recreate_env_dataset(
    bq: GuardedBigQuery,
    ref: str,
    *,
    location: str,
    description: str | None,
    labels: dict[str, str],
    table_expiration_ms: int | None = None,
    kms_key_name: str | None = None,
) -> None:
    """Destroy the dataset with everything in it, and create it empty with the given metadata
    (`kms_key_name`: the prod dataset's default CMEK key)."""
    bq.delete_dataset(ref)
    bq.create_dataset(_new_dataset(ref, location, description, labels, table_expiration_ms, kms_key_name))
    log.info("re-created dataset %s in %s", ref, location)
