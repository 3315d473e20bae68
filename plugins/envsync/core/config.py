"""Load and validate envsync's one config file (config/envsync.yaml, or the path in ENVSYNC_CONFIG).

Every problem is reported as a single ConfigError whose message names the offending key, the bad
value and what is allowed, so a DAG that cannot load its config shows one readable import error.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from envsync.core.identifiers import DATASET_RE, PROJECT_RE, TABLE_RE, IdentifierError, validate_identifier
from envsync.core.limits import Rates
from envsync.core.paths import HOME_ENV, home
from envsync.core.rungs import DEFAULT_DAILY_DAYS, DEFAULT_RUNGS, Ladder

CONFIG_ENV_VAR = "ENVSYNC_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[3] / "config" / "envsync.yaml"  # in a clone of the repository

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]*_$")
# environments that mirror prod's dataset names: in a project of their own they may use an empty prefix
MIRROR_ENVS = ("dev", "qa", "staging", "prodcopy")
# every derived environment of the config (environments.<name>), in the order the docs list them
ENV_NAMES = ("dev", "qa", "staging", "test", "prodcopy", "backup", "drill")
MIN_WINDOW_QUARTERS = 1
MAX_WINDOW_QUARTERS = 8
STRATEGIES = ("auto", "clone_window", "ctas_window", "full_clone")


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid. The message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_prefix(value: str) -> str:
    if value != "" and not PREFIX_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid prefix: use lowercase letters and digits, starting with a "
            "letter and ending with '_' (for example 'dev_'), or '' for dev, qa, staging or prodcopy "
            "in a project of their own"
        )
    return value


def _check_project(value: str | None) -> str | None:
    return value if value is None else validate_identifier("project", value)


class EnvironmentConfig(_Strict):
    prefix: str
    # the GCP project holding this environment's datasets (default: the top-level `project`)
    project: str | None = None
    # the project its BigQuery jobs run in and are billed to (default: the environment's project)
    jobs_project: str | None = None

    _prefix = field_validator("prefix")(classmethod(lambda cls, v: _check_prefix(v)))
    _projects = field_validator("project", "jobs_project")(classmethod(lambda cls, v: _check_project(v)))


class DevConfig(EnvironmentConfig):
    prefix: str = "dev_"
    window_quarters: Annotated[StrictInt, Field(ge=MIN_WINDOW_QUARTERS, le=MAX_WINDOW_QUARTERS)] = 2
    keep: list[str] = Field(default_factory=list)

    @field_validator("keep")
    @classmethod
    def _keep_names(cls, names: list[str]) -> list[str]:
        for name in names:
            dataset, dot, table = name.rpartition(".")
            if dot:
                validate_identifier("dataset", dataset)
            validate_identifier("table", table)
        return names


class QaConfig(EnvironmentConfig):
    """qa_<ds>: destroyed and re-seeded from the versioned seeds on prod's current schemas."""

    prefix: str = "qa_"


class TestEnvConfig(EnvironmentConfig):
    """On-demand test environments: datasets test_<name>_<ds>, deleted after their time-to-live."""

    prefix: str = "test_"
    default_ttl_days: Annotated[StrictInt, Field(ge=1, le=365)] = 7
    max_ttl_days: Annotated[StrictInt, Field(ge=1, le=365)] = 30

    @model_validator(mode="after")
    def _ttl_order(self) -> TestEnvConfig:
        if self.default_ttl_days > self.max_ttl_days:
            raise ValueError(f"default_ttl_days {self.default_ttl_days} is more than max_ttl_days {self.max_ttl_days}")
        return self


class ProdCopyConfig(EnvironmentConfig):
    """A full copy of prod as of a chosen time T (prodcopy_<ds>); optional cron schedule."""

    prefix: str = "prodcopy_"
    schedule: str | None = None


class StagingConfig(EnvironmentConfig):
    """staging_<ds>: seeded like qa, replaced by QA's state at a sprint's end (the staging_cut DAG)."""

    prefix: str = "staging_"
    cut_schedule: str | None = None  # optional cron schedule of staging_cut (default: manual only)


class BackupEnvConfig(EnvironmentConfig):
    """Where the backup ladder keeps its snapshots: backup_<ds>."""

    prefix: str = "backup_"


class DrillConfig(EnvironmentConfig):
    """Scratch datasets drill_<ds> that restores and recovery drills write; tables expire on their own."""

    prefix: str = "drill_"
    table_expiration_days: Annotated[StrictInt, Field(ge=1, le=365)] = 7


class Environments(_Strict):
    dev: DevConfig = DevConfig()
    qa: QaConfig = QaConfig()
    staging: StagingConfig = StagingConfig()
    test: TestEnvConfig = TestEnvConfig()
    prodcopy: ProdCopyConfig = ProdCopyConfig()
    backup: BackupEnvConfig = BackupEnvConfig()
    drill: DrillConfig = DrillConfig()

    def get(self, name: str) -> EnvironmentConfig:
        if name not in ENV_NAMES:
            raise ValueError(f"unknown environment {name!r}; allowed: {list(ENV_NAMES)}")
        env: EnvironmentConfig = getattr(self, name)
        return env


TIME_TRAVEL_HOURS = tuple(range(48, 169, 24))  # what BigQuery allows for a dataset's max_time_travel_hours


class ProdConfig(_Strict):
    # the project holding prod's datasets, read only to envsync (default: the top-level `project`)
    project: str | None = None
    # where prod's own jobs run (confirmed restores and migrations into prod; default: prod.project)
    jobs_project: str | None = None
    datasets: Annotated[list[str], Field(min_length=1)]
    # None: each prod dataset's own max_time_travel_hours, read from BigQuery; a number may only narrow
    # it (envsync.bigquery.timetravel): reads AS OF T must fall inside the narrower window
    time_travel_hours: StrictInt | None = None

    _projects = field_validator("project", "jobs_project")(classmethod(lambda cls, v: _check_project(v)))

    @field_validator("time_travel_hours")
    @classmethod
    def _time_travel_hours(cls, value: int | None) -> int | None:
        if value is not None and value not in TIME_TRAVEL_HOURS:
            raise ValueError(
                f"{value} is not a time-travel window BigQuery allows: use a multiple of 24 from 48 to 168 "
                f"({', '.join(map(str, TIME_TRAVEL_HOURS))}), or null for each prod dataset's own "
                "max_time_travel_hours"
            )
        return value

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, names: list[str]) -> list[str]:
        for name in names:
            validate_identifier("dataset", name)
        if len(set(names)) != len(names):
            raise ValueError(f"datasets are listed twice: {sorted(names)}")
        return names


MASK_RULES = ("hash", "null", "fake")  # and {fixed: value}
# where masks apply: the environments whose tables are derived from prod's rows
MASKABLE_ENVS = ("dev", "qa", "staging", "test", "prodcopy")
MaskedEnv = Literal["dev", "qa", "staging", "test", "prodcopy"]
DEFAULT_MASKED_ENVS: tuple[MaskedEnv, ...] = ("dev", "qa", "staging", "test")
# a policy tag (projects/p/locations/l/taxonomies/t/policyTags/x) or a whole taxonomy (…/taxonomies/t)
POLICY_TAG_RE = re.compile(
    r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/taxonomies/[0-9]+(/policyTags/[0-9]+)?$"
)


class SampleConfig(_Strict):
    """Deterministic sample: rows whose `key` hashes to 0 modulo `modulo` (about 1 in `modulo`)."""

    key: str
    modulo: Annotated[StrictInt, Field(ge=1, le=1_000_000)]

    _key = field_validator("key")(classmethod(lambda cls, v: validate_identifier("column", v)))


class ParentConfig(_Strict):
    """Child rows follow the sampled rows of a parent table: `column` references the parent's sample key."""

    table: str  # <dataset>.<table> of the parent (itself sampled)
    column: str  # the foreign key column in this (child) table

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        dataset, dot, table = value.partition(".")
        if not dot:
            raise ValueError(f"{value!r} must be written <dataset>.<table>")
        validate_identifier("dataset", dataset)
        validate_identifier("table", table)
        return value

    _column = field_validator("column")(classmethod(lambda cls, v: validate_identifier("column", v)))


class FixedMask(_Strict):
    fixed: str | int | float | bool


class TableOverride(_Strict):
    exclude: bool = False
    date_column: str | None = None
    strategy: Literal["auto", "clone_window", "ctas_window", "full_clone"] = "auto"
    # qa/staging/test seeding: from the versioned seed (default) or a masked, deterministic prod sample
    source: Literal["seed", "prod_sample"] = "seed"
    sample: SampleConfig | None = None
    parent: ParentConfig | None = None
    # masks of columns, applied wherever privacy.environments says (dev sync, prod samples, prod-copy)
    mask: dict[str, Literal["hash", "null", "fake"] | FixedMask] = Field(default_factory=dict)
    # columns that identify a row: the verification of masked columns joins copy and prod on them
    # (default: on a hash of the unmasked columns)
    key: list[str] = Field(default_factory=list)

    @field_validator("mask", mode="before")
    @classmethod
    def _yaml_null_mask(cls, masks: Any) -> Any:
        """`{phone: null}`: YAML reads an unquoted null as no value; as a mask it means the `null` mask."""
        if isinstance(masks, dict):
            return {column: "null" if rule is None else rule for column, rule in masks.items()}
        return masks

    @field_validator("key")
    @classmethod
    def _key_columns(cls, names: list[str]) -> list[str]:
        for name in names:
            validate_identifier("column", name)
        return names

    @field_validator("date_column")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        if value is not None:
            validate_identifier("column", value)
        return value

    @field_validator("mask")
    @classmethod
    def _mask_columns(cls, mask: dict[str, Any]) -> dict[str, Any]:
        for column in mask:
            validate_identifier("column", column)
        return mask

    @model_validator(mode="after")
    def _sampling(self) -> TableOverride:
        if self.source == "prod_sample":
            if (self.sample is None) == (self.parent is None):
                raise ValueError(
                    "source prod_sample needs exactly one of sample (key, modulo) or parent (table, column)"
                )
            keys = {self.sample.key} if self.sample else {self.parent.column}  # type: ignore[union-attr]  # one is set: checked above
            masked_keys = keys & set(self.mask)
            if masked_keys:
                raise ValueError(f"mask: {sorted(masked_keys)} sample/parent keys cannot be masked (joins would break)")
        elif self.sample or self.parent:
            raise ValueError("sample and parent apply only with source: prod_sample")
        if self.date_column and self.date_column in self.mask:
            raise ValueError(
                f"mask: column {self.date_column!r} is the date_column, which windows the copy and partitions "
                "or filters the table; a masked value would move rows between partitions and out of the window"
            )
        masked_key_columns = sorted(set(self.key) & set(self.mask))
        if masked_key_columns:
            raise ValueError(
                f"mask: key columns {masked_key_columns} cannot be masked: verification matches rows on them"
            )
        return self


class PrivacySettings(_Strict):
    """Where masks apply, which BigQuery policy tags mark columns masked everywhere they apply, and the salt."""

    # environments whose copies of prod rows are masked; prodcopy reproduces prod exactly unless listed
    environments: list[MaskedEnv] = Field(default_factory=lambda: list(DEFAULT_MASKED_ENVS))
    # policy tag (or taxonomy) resource names: a column carrying one is masked with policy_tag_mask
    policy_tags: list[str] = Field(default_factory=list)
    policy_tag_mask: Literal["hash", "null", "fake"] = "hash"
    # environment variable holding the salt of hash/fake masks (null: seeds.salt_env)
    salt_env: str | None = None

    @field_validator("policy_tag_mask", mode="before")
    @classmethod
    def _yaml_null_mask(cls, rule: Any) -> Any:
        return "null" if rule is None else rule  # `policy_tag_mask: null` (YAML's null) is the null mask

    @field_validator("policy_tags")
    @classmethod
    def _tags(cls, names: list[str]) -> list[str]:
        for name in names:
            if not POLICY_TAG_RE.match(name):
                raise ValueError(
                    f"{name!r} is not a policy tag or taxonomy resource name: write "
                    "projects/<project>/locations/<location>/taxonomies/<id>[/policyTags/<id>]"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"policy tags are listed twice: {sorted(names)}")
        return names

    @field_validator("environments")
    @classmethod
    def _envs(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"environments are listed twice: {names}")
        return names

    @field_validator("salt_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return value if value is None else _check_env_name(value)


class SyncSettings(_Strict):
    max_concurrent_jobs: Annotated[int, Field(ge=1, le=50)] = 4
    verify_partitioning: Literal["error", "warn"] = "error"
    job_timeout_seconds: Annotated[int, Field(ge=10, le=86_400)] = 3_600


class RateLimitSettings(_Strict):
    """How fast envsync lets itself go under BigQuery's rate limits (https://cloud.google.com/bigquery/quotas),
    per process (`envsync.core.limits`); each at most BigQuery's own figure, and by default below it
    because the other tasks and DAGs of the same identity share the quota."""

    api_requests_per_second: Annotated[int, Field(ge=1, le=100)] = 50  # per method; BigQuery: 100
    tables_insert_per_second: Annotated[int, Field(ge=1, le=10)] = 5  # BigQuery: 10
    jobs_get_per_second: Annotated[int, Field(ge=1, le=1_000)] = 500  # BigQuery: 1,000
    table_updates_per_10s: Annotated[int, Field(ge=1, le=5)] = 4  # per table; BigQuery: 5
    dataset_updates_per_10s: Annotated[int, Field(ge=1, le=5)] = 4  # per dataset; BigQuery: 5
    dml_per_table_per_10s: Annotated[int, Field(ge=1, le=25)] = 20  # DML statements per table; BigQuery: 25

    def rates(self) -> Rates:
        return Rates(**self.model_dump())


class SeedSettings(_Strict):
    dir: str = "sql/seeds"  # relative to ENVSYNC_HOME (default: the repository root), or absolute
    salt_env: str = "ENVSYNC_MASKING_SALT"  # environment variable holding the masking salt

    _salt_env = field_validator("salt_env")(classmethod(lambda cls, v: _check_env_name(v)))


def _check_env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
        raise ValueError(f"{value!r} is not an environment variable name (A-Z, 0-9, _)")
    return value


def _check_bucket(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", value):
        raise ValueError(
            f"{value!r} is not a valid GCS bucket name: 3-63 lowercase letters, digits, '-', "
            "'_' or '.', starting and ending with a letter or digit"
        )
    return value


class StateSettings(_Strict):
    bucket: str
    # the project the storage client bills (default: the top-level `project`); in a split layout the
    # state bucket belongs outside prod's project unless this names prod's project explicitly
    project: str | None = None

    _project = field_validator("project")(classmethod(lambda cls, v: _check_project(v)))

    _bucket = field_validator("bucket")(classmethod(lambda cls, v: _check_bucket(v)))


class ExportSettings(_Strict):
    """Export of the daily backup rung to gs://<bucket>/backups/<ds>/<table>/<date>/ (retention past time travel)."""

    enabled: bool = False
    format: Literal["PARQUET", "AVRO"] = "PARQUET"
    bucket: str | None = None  # default: state.bucket

    _bucket = field_validator("bucket")(classmethod(lambda cls, v: v if v is None else _check_bucket(v)))


BACKUP_ENVIRONMENTS = ("prod", "staging")  # environments the backup ladder can protect
BackupEnv = Literal["prod", "staging"]
DEFAULT_BACKUP_ENVS: tuple[BackupEnv, ...] = ("prod",)


class BackupSettings(_Strict):
    """The exponential backup ladder (see envsync.backups.ladder), manual pins, exports and restores."""

    # prod's tables go to backup_<ds>; staging's to backup_staging_<ds> (its own rungs, pins and ledger)
    environments: Annotated[list[BackupEnv], Field(min_length=1)] = Field(
        default_factory=lambda: list(DEFAULT_BACKUP_ENVS)
    )
    rungs: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: list(DEFAULT_RUNGS))
    daily_days: Annotated[StrictInt, Field(ge=0, le=366)] = DEFAULT_DAILY_DAYS
    pinned_expiry_days: Annotated[StrictInt, Field(ge=1, le=3650)] = 90
    # restores read prod by time travel only when T is this recent (default: the prod dataset's window,
    # see prod.time_travel_hours); it can only narrow that window; 0 makes every restore use a backup
    restore_time_travel_hours: Annotated[StrictInt, Field(ge=0, le=168)] | None = None
    export: ExportSettings = ExportSettings()

    @field_validator("environments")
    @classmethod
    def _environments_once(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"environments are listed twice: {names}")
        return names

    @model_validator(mode="after")
    def _ladder(self) -> BackupSettings:
        self.ladder()  # raises ValueError naming the bad rung
        return self

    def ladder(self) -> Ladder:
        return Ladder.from_strings(self.rungs, daily_days=self.daily_days)


class LeaseConfig(_Strict):
    """One writer per environment across all DAGs (envsync.core.lease; README "Overlapping runs")."""

    # how long a run waits for another run's lease before it fails naming that run (0: fail at once)
    wait_seconds: Annotated[StrictInt, Field(ge=0, le=86400)] = 900
    poll_seconds: Annotated[StrictInt, Field(ge=1, le=600)] = 15
    # a running task renews its run's leases this often
    heartbeat_seconds: Annotated[StrictInt, Field(ge=1, le=3600)] = 30
    # a lease not renewed for this long is stale and may be taken over (its run is presumed dead)
    stale_after_seconds: Annotated[StrictInt, Field(ge=10, le=86400)] = 900

    @model_validator(mode="after")
    def _stale_after_heartbeats(self) -> LeaseConfig:
        if self.stale_after_seconds < 3 * self.heartbeat_seconds:
            raise ValueError(
                f"leases.stale_after_seconds {self.stale_after_seconds} must be at least 3 heartbeats "
                f"(3 x leases.heartbeat_seconds = {3 * self.heartbeat_seconds}): a live run would look dead"
            )
        return self


class AuditSettings(_Strict):
    """The dataset of envsync's audit tables (run summaries, recovery drills)."""

    dataset: str = "envsync_audit"
    # the project of the audit dataset (default: the top-level `project`); in a split layout it belongs
    # outside prod's project unless this names prod's project explicitly
    project: str | None = None

    _project = field_validator("project")(classmethod(lambda cls, v: _check_project(v)))
    _dataset = field_validator("dataset")(classmethod(lambda cls, v: validate_identifier("dataset", v)))


class AlertSettings(_Strict):
    """Slack alerts through the Airflow Slack provider's webhook notifier."""

    enabled: bool = True
    slack_conn_id: str = "slack_envsync"  # an Airflow connection of type slackwebhook

    @field_validator("slack_conn_id")
    @classmethod
    def _conn_id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,250}", value):
            raise ValueError(f"{value!r} is not an Airflow connection id (letters, digits, '_', '.', '-')")
        return value


class EnvsyncConfig(_Strict):
    project: str
    location: str = "US"
    prod: ProdConfig
    environments: Environments = Environments()
    tables: dict[str, TableOverride] = Field(default_factory=dict)
    sync: SyncSettings = SyncSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    seeds: SeedSettings = SeedSettings()
    state: StateSettings
    backups: BackupSettings = BackupSettings()
    audit: AuditSettings = AuditSettings()
    leases: LeaseConfig = LeaseConfig()
    alerts: AlertSettings = AlertSettings()
    privacy: PrivacySettings = PrivacySettings()

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        validate_identifier("project", value)
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]+(-[a-z]+[0-9]*)?", value):
            raise ValueError(f"{value!r} is not a BigQuery location (for example US, EU, europe-west1)")
        return value

    @field_validator("tables")
    @classmethod
    def _table_keys(cls, tables: dict[str, TableOverride]) -> dict[str, TableOverride]:
        for key in tables:
            dataset, _, table = key.partition(".")
            if not table:
                raise ValueError(f"{key!r} must be written <dataset>.<table>")
            validate_identifier("dataset", dataset)
            validate_identifier("table", table)
        return tables

    @model_validator(mode="after")
    def _layout(self) -> EnvsyncConfig:
        """Where every environment lives: refused when an environment would be (or look like) one of
        prod's datasets, two environments share a project and dataset, or the audit dataset or state
        bucket default into prod's project of a split layout."""
        prod_project = self.prod_project
        for name in ENV_NAMES:
            env = self.environments.get(name)
            if env.prefix != "":
                continue
            if name not in MIRROR_ENVS:
                raise ValueError(
                    f"environments.{name}.prefix: '' is allowed only for {', '.join(MIRROR_ENVS)} in a project "
                    f"of their own; {name} needs a prefix"
                )
            if self.project_of(name) == prod_project:
                raise ValueError(
                    f"environments.{name}.prefix: '' would make {name}'s datasets prod's own datasets in project "
                    f"{prod_project!r}; set environments.{name}.project to another project, or a prefix"
                )
        # prefixes of environments sharing a project must not overlap (test_<name>_<ds> included)
        named = [(name, self.project_of(name), self.environments.get(name).prefix) for name in ENV_NAMES]
        for i, (name, project, prefix) in enumerate(named):
            for other, other_project, other_prefix in named[i + 1 :]:
                if project != other_project or not prefix or not other_prefix:
                    continue
                if prefix.startswith(other_prefix) or other_prefix.startswith(prefix):
                    raise ValueError(
                        f"environment prefixes must not overlap: {prefix!r} and {other_prefix!r} "
                        f"(environments.{name}.prefix and environments.{other}.prefix, both in project {project!r})"
                    )
        for dataset in self.prod.datasets:
            for name, project, prefix in named:
                if project == prod_project and prefix and dataset.startswith(prefix):
                    raise ValueError(
                        f"prod.datasets: {dataset!r} starts with the {name} prefix {prefix!r}; a prod "
                        "dataset cannot look like an environment dataset"
                    )
        owners: dict[tuple[str, str], str] = {(prod_project, ds): "prod.datasets" for ds in self.prod.datasets}
        audit = (self.audit_project, self.audit.dataset)

        def claim(key: tuple[str, str], owner: str) -> None:
            if key in owners and owners[key] != owner:
                raise ValueError(
                    f"{owner} and {owners[key]} both resolve to dataset {key[1]!r} in project {key[0]!r}; "
                    "give one of them another prefix or project"
                )
            owners[key] = owner

        for name in ("dev", "qa", "staging", "prodcopy", "backup", "drill"):
            for ds in self.prod.datasets:
                claim((self.project_of(name), self.env_dataset(name, ds)), f"environments.{name}")
        for name in ("backup", "drill"):  # staging's backups and drills: <prefix>staging_<ds>
            for ds in self.prod.datasets:
                claim(
                    (self.project_of(name), self.environments.get(name).prefix + self.source_dataset("staging", ds)),
                    f"environments.{name} (of staging)",
                )
        if audit in owners or any(
            project == audit[0] and prefix and audit[1].startswith(prefix) for _, project, prefix in named
        ):
            raise ValueError(
                f"audit.dataset {audit[1]!r} must be neither a prod dataset nor an environment dataset "
                f"(project {audit[0]!r})"
            )
        if self.prod.project is not None:
            if self.audit.project is None and self.audit_project == prod_project:
                raise ValueError(
                    f"audit.project: the audit dataset would default into prod's project {prod_project!r}; "
                    "set audit.project (to prod's project only if that is meant)"
                )
            if self.state.project is None and self.state_project == prod_project:
                raise ValueError(
                    f"state.project: the state bucket would default into prod's project {prod_project!r}; "
                    "set state.project (to prod's project only if that is meant)"
                )
        return self

    @model_validator(mode="after")
    def _backup_settings_fit_prod(self) -> EnvsyncConfig:
        hours = self.backups.restore_time_travel_hours
        if hours is not None and self.prod.time_travel_hours is not None and hours > self.prod.time_travel_hours:
            raise ValueError(
                f"backups.restore_time_travel_hours {hours} is more than prod.time_travel_hours "
                f"{self.prod.time_travel_hours}: restores cannot read further back than time travel keeps"
            )
        return self

    @model_validator(mode="after")
    def _overrides_name_prod_datasets(self) -> EnvsyncConfig:
        for key, override in self.tables.items():
            dataset = key.split(".", 1)[0]
            if dataset not in self.prod.datasets:
                raise ValueError(f"tables.{key}: dataset {dataset!r} is not one of prod.datasets {self.prod.datasets}")
            if override.parent is not None:
                parent = self.tables.get(override.parent.table)
                if parent is None or parent.sample is None:
                    raise ValueError(
                        f"tables.{key}.parent: {override.parent.table!r} must itself be configured with "
                        "source: prod_sample and a sample (key, modulo)"
                    )
        return self

    # ----- helpers used across the package -------------------------------------------------
    @property
    def salt_env(self) -> str:
        """The environment variable holding the salt of hash/fake masks."""
        return self.privacy.salt_env or self.seeds.salt_env

    def masks_apply(self, env: str) -> bool:
        """Are masks (per-table and policy-tag masks) applied to the copies of prod rows in `env`?"""
        return env in self.privacy.environments

    def override(self, dataset: str, table: str) -> TableOverride:
        return self.tables.get(f"{dataset}.{table}", TableOverride())

    # ----- projects (README "Environments in their own projects") ------------------------------
    @property
    def prod_project(self) -> str:
        """The project of prod's datasets (read only to envsync)."""
        return self.prod.project or self.project

    @property
    def audit_project(self) -> str:
        return self.audit.project or self.project

    @property
    def state_project(self) -> str:
        """The project the storage client of the state bucket (and exports) bills."""
        return self.state.project or self.project

    def project_of(self, env: str) -> str:
        """The project holding environment `env`'s datasets (`prod`, `audit` or a derived environment)."""
        if env == "prod":
            return self.prod_project
        if env == "audit":
            return self.audit_project
        return self.environments.get(env).project or self.project

    def jobs_project_of(self, env: str) -> str:
        """The project whose BigQuery jobs write environment `env` (and pay for them)."""
        if env == "prod":
            return self.prod.jobs_project or self.prod_project
        if env == "audit":
            return self.audit_project
        return self.environments.get(env).jobs_project or self.project_of(env)

    def source_project(self, env: str) -> str:
        """The project of the environment a backup or restore of `env` (prod or staging) reads."""
        if env not in BACKUP_ENVIRONMENTS:
            raise ValueError(f"environment {env!r} has no backups; allowed: {list(BACKUP_ENVIRONMENTS)}")
        return self.project_of(env)

    @property
    def split(self) -> bool:
        """Does any environment (or the audit dataset) live outside the top-level project?"""
        return len(self.projects()) > 1

    def projects(self) -> list[str]:
        """Every project envsync reads or writes, prod's first."""
        found = [self.prod_project, self.audit_project]
        for name in ENV_NAMES:
            found += [self.project_of(name), self.jobs_project_of(name)]
        found.append(self.jobs_project_of("prod"))
        return list(dict.fromkeys(found))

    def qualified(self, project: str, dataset: str, table: str | None = None) -> str:
        """How manifests, audit rows, alerts and the page name an object: `dataset[.table]` in the
        one-project layout (as always), `project.dataset[.table]` once environments live in several."""
        name = dataset if table is None else f"{dataset}.{table}"
        return f"{project}.{name}" if self.split else name

    def write_spaces(self) -> list[tuple[str, str, frozenset[str] | None]]:
        """Where derived environments may be written: (project, prefix, exact datasets or None).

        A prefixed environment owns every dataset of its project starting with its prefix; one with an
        empty prefix (a project of its own) owns exactly the names of prod's datasets there.
        """
        spaces: list[tuple[str, str, frozenset[str] | None]] = []
        for name in ENV_NAMES:
            prefix = self.environments.get(name).prefix
            spaces.append((self.project_of(name), prefix, None if prefix else frozenset(self.prod.datasets)))
        return spaces

    def env_prefixes(self) -> dict[str, str]:
        envs = self.environments
        return {
            "dev": envs.dev.prefix,
            "qa": envs.qa.prefix,
            "staging": envs.staging.prefix,
            "test": envs.test.prefix,
            "prodcopy": envs.prodcopy.prefix,
            "backup": envs.backup.prefix,
            "drill": envs.drill.prefix,
        }

    def restore_time_travel_hours(self) -> int:
        """How recent T must be, by the config, for a restore to read prod by time travel (0: never).

        The prod dataset's own window bounds it further (envsync.bigquery.timetravel.restore_window_hours).
        """
        hours = self.backups.restore_time_travel_hours
        if hours is not None:
            return hours
        return TIME_TRAVEL_HOURS[-1] if self.prod.time_travel_hours is None else self.prod.time_travel_hours

    @property
    def export_bucket(self) -> str:
        return self.backups.export.bucket or self.state.bucket

    def env_dataset(self, env: str, prod_dataset: str, test_name: str | None = None) -> str:
        """The dataset of `env` derived from a prod dataset (test envs: test_<name>_<ds>)."""
        if env == "test":
            if not test_name:
                raise ValueError("a test environment needs a name")
            return f"{self.environments.test.prefix}{test_name}_{prod_dataset}"
        return self.env_prefixes()[env] + prod_dataset

    def source_dataset(self, env: str, prod_dataset: str) -> str:
        """The dataset a backup or restore of environment `env` (prod or staging) reads: `<ds>` or
        `staging_<ds>`. Its backups live in `backup_` + this name, its drills in `drill_` + this name."""
        if env == "prod":
            return prod_dataset
        if env == "staging":
            return self.env_dataset("staging", prod_dataset)
        raise ValueError(f"environment {env!r} has no backups; allowed: {list(BACKUP_ENVIRONMENTS)}")

    def dev_dataset(self, prod_dataset: str) -> str:
        return self.environments.dev.prefix + prod_dataset


def _format_validation_error(error: ValidationError, path: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        value = item.get("input")
        shown = "" if item["type"] in ("missing",) or isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{key}: {message}{shown}")
    return f"invalid envsync config {path}: " + "; ".join(lines)


def parse_config(data: Any, source: str = "<config>") -> EnvsyncConfig:
    """Validate already-parsed YAML; raise ConfigError naming every bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid envsync config {source}: the top level must be a mapping of keys")
    try:
        return EnvsyncConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None
    except IdentifierError as error:  # raised directly by nested validators
        raise ConfigError(f"invalid envsync config {source}: {error}") from None


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """`path`, else ENVSYNC_CONFIG, else $ENVSYNC_HOME/config/envsync.yaml (envsync.core.paths)."""
    return Path(path or os.environ.get(CONFIG_ENV_VAR) or home() / "config" / "envsync.yaml")


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> EnvsyncConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read envsync config {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"envsync config {path} is not valid YAML: {error}") from None
    return parse_config(data, path)


def load_config(path: str | os.PathLike[str] | None = None) -> EnvsyncConfig:
    """Load the config named by `path`, ENVSYNC_CONFIG, or config/envsync.yaml (cached by mtime)."""
    resolved = config_path(path)
    try:
        mtime = resolved.stat().st_mtime_ns
    except OSError:
        raise ConfigError(
            f"envsync config {resolved} does not exist (set {CONFIG_ENV_VAR} to the file, or {HOME_ENV} to the "
            "folder holding config/envsync.yaml)"
        ) from None
    return _load_cached(str(resolved), mtime)


__all__ = [
    "CONFIG_ENV_VAR",
    "ConfigError",
    "DATASET_RE",
    "EnvsyncConfig",
    "MAX_WINDOW_QUARTERS",
    "MIN_WINDOW_QUARTERS",
    "PROJECT_RE",
    "STRATEGIES",
    "TABLE_RE",
    "TableOverride",
    "load_config",
    "parse_config",
]
