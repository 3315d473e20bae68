"""Validate the run inputs of the sync DAG (params) in the task, with messages naming the bad value.

The trigger form validates them too, but a REST trigger or a backfill conf may bypass the form.
No Airflow import here, so the checks are unit-testable on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envsync.core.config import EnvsyncConfig


def check_datasets(config: EnvsyncConfig, datasets: Any) -> list[str]:
    """The `datasets` param of every DAG: default all configured; each named once; all configured."""
    if datasets in (None, "", []):
        datasets = list(config.prod.datasets)
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise ValueError(f"param datasets must be a list of dataset names, got {datasets!r}")
    datasets = list(dict.fromkeys(datasets))  # a dataset named twice is handled once
    unknown = [d for d in datasets if d not in config.prod.datasets]
    if unknown:
        raise ValueError(f"param datasets: {unknown} are not configured; allowed: {config.prod.datasets}")
    return datasets


def check_environments(environments: Any, allowed: Sequence[str], what: str) -> list[str]:
    """An `environments` param: default all `allowed`; a list of them, each once (names the bad value)."""
    if environments in (None, "", []):
        return list(allowed)
    if not isinstance(environments, list) or not all(isinstance(e, str) for e in environments):
        raise ValueError(f"param environments must be a list of environment names, got {environments!r}")
    unknown = [e for e in environments if e not in allowed]
    if unknown:
        raise ValueError(f"param environments: {unknown} are not environments {what}; allowed: {list(allowed)}")
    return list(dict.fromkeys(environments))


def check_environments_param(environments: Any) -> list[str]:
    """The parity DAG's `environments` param: default all; each one of the environments parity checks
    (envsync.environments.parity.ENVIRONMENTS; names the bad value)."""
    from envsync.environments.parity import ENVIRONMENTS

    return check_environments(environments, ENVIRONMENTS, "parity checks")


def whole_number(
    name: str,
    value: Any,
    *,
    default: int,
    low: int,
    high: int,
    empty: tuple[Any, ...] = (None,),
    kind: str = "an integer",
    note: str = "",
) -> int:
    """An integer param (the form sends ints; a REST conf may send digits as text) within [low, high]."""
    if value in empty:
        value = default
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"param {name} must be {kind} from {low} to {high}{note}, got {value!r}")
    return value


MAX_REASON = 500


def check_environment(name: str, value: Any, *, default: str = "prod") -> str:
    """A `source` param: the environment whose backups a restore or drill reads (prod or staging)."""
    from envsync.core.config import BACKUP_ENVIRONMENTS

    if value in (None, ""):
        value = default
    if value not in BACKUP_ENVIRONMENTS:
        raise ValueError(f"param {name} must be one of {list(BACKUP_ENVIRONMENTS)}, got {value!r}")
    return str(value)


def check_backup_environments(config: EnvsyncConfig, environments: Any) -> list[str]:
    """The `environments` param of backup_ladder: default `backups.environments`; prod and/or staging."""
    if environments in (None, "", []):
        environments = list(config.backups.environments)
    if not isinstance(environments, list):
        raise ValueError(f"param environments must be a list like ['prod', 'staging'], got {environments!r}")
    return list(dict.fromkeys(check_environment("environments", e) for e in environments))


def validate_backup_params(
    config: EnvsyncConfig, datasets: Any, reason: Any, expiry_days: Any
) -> tuple[list[str], str, int]:
    """The backup_ladder params, checked in the task (a REST trigger may bypass the form)."""
    datasets = check_datasets(config, datasets)
    reason = "" if reason is None else reason
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ValueError(f"param reason must be text of at most {MAX_REASON} characters, got {reason!r}")
    expiry_days = whole_number(
        "expiry_days",
        expiry_days,
        default=config.backups.pinned_expiry_days,
        empty=(None, ""),
        low=1,
        high=3650,
        kind="a whole number of days",
    )
    return datasets, reason.strip(), expiry_days


def validate_params(
    config: EnvsyncConfig, datasets: Any, tables: Any, window_quarters: Any, dry_run: Any
) -> tuple[list[str], list[str], int, bool]:
    """Check run inputs again in the task (a REST trigger may bypass the form); name the bad value."""
    from envsync.core.config import MAX_WINDOW_QUARTERS, MIN_WINDOW_QUARTERS
    from envsync.core.identifiers import IdentifierError, validate_identifier

    datasets = check_datasets(config, datasets)
    tables = tables or []
    if not isinstance(tables, list):
        raise ValueError(f"param tables must be a list like ['orders', 'sales.customers'], got {tables!r}")
    for entry in tables:
        try:
            dataset, dot, table = str(entry).rpartition(".")
            if dot:
                validate_identifier("dataset", dataset)
            validate_identifier("table", table)
        except IdentifierError as error:
            raise ValueError(f"param tables: {error}") from None
    window_quarters = whole_number(
        "window_quarters",
        window_quarters,
        default=config.environments.dev.window_quarters,
        low=MIN_WINDOW_QUARTERS,
        high=MAX_WINDOW_QUARTERS,
    )
    if isinstance(dry_run, str):
        dry_run = dry_run.strip().lower() in ("true", "1", "yes")
    return datasets, [str(t) for t in tables], window_quarters, bool(dry_run)


TEST_ENV_NAME_PATTERN = r"^[a-z][a-z0-9]{0,19}$"
RESEED_ENVIRONMENTS = ("qa", "staging")


def validate_reseed_params(
    config: EnvsyncConfig, environments: Any, datasets: Any, test_env: Any, ttl_days: Any
) -> tuple[list[str], list[str], str | None, int]:
    """Inputs of reseed_environments, checked before any BigQuery call; errors name the bad value."""
    import re

    environments = check_environments(environments, RESEED_ENVIRONMENTS, "envsync re-seeds")
    datasets = check_datasets(config, datasets)
    name = "" if test_env is None else test_env
    if not isinstance(name, str) or (name and not re.fullmatch(TEST_ENV_NAME_PATTERN, name)):
        raise ValueError(
            f"param test_env: {test_env!r} is not a valid test environment name: 1-20 lowercase letters and "
            "digits, starting with a letter"
        )
    test = config.environments.test
    ttl_days = whole_number(
        "ttl_days",
        ttl_days,
        default=test.default_ttl_days,
        empty=(None, ""),
        low=1,
        high=test.max_ttl_days,
        note=" (environments.test.max_ttl_days)",
    )
    return list(dict.fromkeys(environments)), datasets, name or None, ttl_days
