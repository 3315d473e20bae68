"""Loading and validating config/envsync.yaml (envsync.core.config): one readable ConfigError per bad file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from envsync.core.config import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    ConfigError,
    EnvsyncConfig,
    load_config,
    parse_config,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "config" / "envsync.yaml"


def minimal() -> dict[str, Any]:
    return {
        "project": "envsync-demo",
        "prod": {"datasets": ["sales", "marketing"]},
        "environments": {"dev": {"prefix": "dev_", "window_quarters": 2}},
        "tables": {"sales.orders_flat": {"date_column": "order_date"}},
        "state": {"bucket": "envsync-demo-state"},
    }


def config_error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.yaml")
    message = str(info.value)
    assert "\n" not in message.strip() or "YAML" in message, f"not one line: {message!r}"
    assert "errors.pydantic.dev" not in message
    assert "For further information" not in message
    return message


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


# ------------------------------------------------------------------------- loading


def test_shipped_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    assert DEFAULT_CONFIG_PATH == SHIPPED
    config = load_config()
    assert isinstance(config, EnvsyncConfig)
    assert config.project == "envsync-demo"
    assert config.prod.datasets == ["sales", "marketing"]
    assert config.env_prefixes() == {
        "dev": "dev_",
        "qa": "qa_",
        "staging": "staging_",
        "test": "test_",
        "prodcopy": "prodcopy_",
        "backup": "backup_",
        "drill": "drill_",
    }
    assert config.environments.dev.window_quarters == 2
    assert config.dev_dataset("sales") == "dev_sales"
    assert config.override("sales", "orders_flat").date_column == "order_date"
    assert config.override("sales", "audit_log").exclude is True
    assert config.override("sales", "anything_else").strategy == "auto"
    assert config.state.bucket == "envsync-demo-state"


def test_env_var_points_to_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = minimal()
    data["project"] = "other-project-1"
    data["environments"]["dev"]["window_quarters"] = 5
    path = write(tmp_path / "other.yaml", data)
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    config = load_config()
    assert config.project == "other-project-1"
    assert config.environments.dev.window_quarters == 5
    # an explicit path wins over the env var
    assert load_config(SHIPPED).project == "envsync-demo"


def test_reload_sees_an_edited_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", minimal())
    assert load_config(path).environments.dev.window_quarters == 2
    data = minimal()
    data["environments"]["dev"]["window_quarters"] = 3
    write(path, data)
    import os

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_config(path).environments.dev.window_quarters == 3


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV_VAR, str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config()
    assert str(tmp_path / "nope.yaml") in str(info.value)
    assert CONFIG_ENV_VAR in str(info.value)


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read envsync config") as info:
        load_config(tmp_path)  # a directory: exists, cannot be read as a file
    assert str(tmp_path) in str(info.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "project: [unclosed\nprod: {\n")
    with pytest.raises(ConfigError, match="is not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("text", ["- a\n- b\n", "", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "top.yaml", text)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


# ------------------------------------------------------------------------- validation errors


def test_minimal_config_is_valid_and_fills_defaults() -> None:
    config = parse_config({"project": "envsync-demo", "prod": {"datasets": ["sales"]}, "state": {"bucket": "abc"}})
    assert config.location == "US"
    assert config.environments.dev.prefix == "dev_"
    assert config.environments.dev.window_quarters == 2
    assert config.environments.qa.prefix == "qa_"
    assert config.sync.verify_partitioning == "error"


def test_unknown_top_level_key() -> None:
    data = minimal()
    data["windw"] = 2
    message = config_error(data)
    assert "windw: unknown key" in message
    assert "test.yaml" in message


def test_unknown_nested_key() -> None:
    data = minimal()
    data["environments"]["dev"]["windw"] = 2
    assert "environments.dev.windw: unknown key" in config_error(data)


def test_unknown_key_in_a_table_override() -> None:
    data = minimal()
    data["tables"]["sales.orders"] = {"date_col": "d"}
    assert "tables.sales.orders.date_col: unknown key" in config_error(data)


def test_bad_prefix() -> None:
    data = minimal()
    data["environments"]["dev"]["prefix"] = "Dev-"
    message = config_error(data)
    assert "environments.dev.prefix" in message
    assert "'Dev-'" in message
    assert "'dev_'" in message  # says what is allowed


@pytest.mark.parametrize("bad", ["bad-name", "sa les", "x.y", ""])
def test_illegal_prod_dataset_name(bad: str) -> None:
    data = minimal()
    data["prod"]["datasets"] = ["sales", bad]
    message = config_error(data)
    assert "prod.datasets" in message
    assert f"illegal dataset name {bad!r}" in message


def test_duplicate_prod_dataset() -> None:
    data = minimal()
    data["prod"]["datasets"] = ["sales", "sales"]
    assert "prod.datasets: datasets are listed twice" in config_error(data)


def test_empty_prod_datasets() -> None:
    data = minimal()
    data["prod"]["datasets"] = []
    data["tables"] = {}
    assert "prod.datasets" in config_error(data)


@pytest.mark.parametrize(
    ("key", "named"),
    [("sales.bad name", "'bad name'"), ("nodot", "'nodot'"), ("sa-les.orders", "'sa-les'"), ("sales.a.b", "'a.b'")],
)
def test_illegal_table_key(key: str, named: str) -> None:
    data = minimal()
    data["tables"][key] = {"exclude": True}
    message = config_error(data)
    assert "tables" in message
    assert named in message


@pytest.mark.parametrize(
    ("value", "words"),
    [(0, "greater than or equal to 1"), (9, "less than or equal to 8"), ("two", "valid integer"), (2.5, "integer")],
)
def test_window_quarters_out_of_range(value: Any, words: str) -> None:
    data = minimal()
    data["environments"]["dev"]["window_quarters"] = value
    message = config_error(data)
    assert "environments.dev.window_quarters" in message
    assert words in message
    assert f"(got {value!r})" in message


def test_window_quarters_boolean_is_rejected() -> None:
    data = minimal()
    data["environments"]["dev"]["window_quarters"] = True
    assert "environments.dev.window_quarters" in config_error(data)


def test_table_override_for_a_dataset_not_in_prod() -> None:
    data = minimal()
    data["tables"]["finance.ledger"] = {"exclude": True}
    message = config_error(data)
    assert "tables.finance.ledger" in message
    assert "'finance'" in message
    assert "['sales', 'marketing']" in message


def test_overlapping_prefixes_are_rejected() -> None:
    data = minimal()
    data["environments"]["qa"] = {"prefix": "dev_"}
    message = config_error(data)
    assert "environments" in message
    assert "overlap" in message
    assert "'dev_'" in message


def test_nested_prefix_is_rejected_naming_the_key() -> None:
    data = minimal()
    data["environments"]["qa"] = {"prefix": "dev_x_"}
    message = config_error(data)
    assert "environments.qa.prefix" in message
    assert "'dev_x_'" in message


def test_prod_dataset_with_an_environment_prefix_is_rejected() -> None:
    data = minimal()
    data["prod"]["datasets"] = ["sales", "dev_sales"]
    assert "prod.datasets" in config_error(data)


@pytest.mark.parametrize("bucket", ["Bad_Bucket!", "ab", "-bucket", "UPPER"])
def test_bad_bucket_name(bucket: str) -> None:
    data = minimal()
    data["state"]["bucket"] = bucket
    message = config_error(data)
    assert "state.bucket" in message
    assert repr(bucket) in message
    assert "GCS bucket name" in message


def test_bad_strategy_value() -> None:
    data = minimal()
    data["tables"]["sales.orders"] = {"strategy": "copy"}
    message = config_error(data)
    assert "tables.sales.orders.strategy" in message
    assert "'copy'" in message
    for allowed in ("auto", "clone_window", "ctas_window", "full_clone"):
        assert allowed in message


def test_bad_date_column_name() -> None:
    data = minimal()
    data["tables"]["sales.orders"] = {"date_column": "order date"}
    message = config_error(data)
    assert "tables.sales.orders.date_column" in message
    assert "'order date'" in message


def test_bad_keep_entry() -> None:
    data = minimal()
    data["environments"]["dev"]["keep"] = ["sales.bad name"]
    message = config_error(data)
    assert "environments.dev.keep" in message
    assert "'bad name'" in message


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("project", "Bad_Project", "project: illegal project name 'Bad_Project'"),
        ("location", "u s", "location: 'u s' is not a BigQuery location"),
    ],
)
def test_bad_project_and_location(key: str, value: str, named: str) -> None:
    data = minimal()
    data[key] = value
    assert named in config_error(data)


@pytest.mark.parametrize("key", ["project", "prod", "state"])
def test_missing_required_key(key: str) -> None:
    data = minimal()
    del data[key]
    if key == "prod":
        data["tables"] = {}
    assert f"{key}: required key is missing" in config_error(data)


def test_several_problems_are_reported_in_one_message() -> None:
    data = minimal()
    data["windw"] = 1
    data["state"]["bucket"] = "Bad!"
    message = config_error(data)
    assert "windw: unknown key" in message
    assert "state.bucket" in message


def test_file_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    data = copy.deepcopy(yaml.safe_load(SHIPPED.read_text()))
    data["environments"]["dev"]["window_quarters"] = 9
    path = write(tmp_path / "wq9.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"invalid envsync config {path}: ")
    assert "environments.dev.window_quarters" in message and "(got 9)" in message
    assert "errors.pydantic.dev" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_leases_default_and_a_stale_bound_under_three_heartbeats_is_refused() -> None:
    leases = parse_config(minimal(), "test.yaml").leases
    assert (leases.wait_seconds, leases.heartbeat_seconds, leases.stale_after_seconds) == (900, 30, 900)
    message = config_error({**minimal(), "leases": {"heartbeat_seconds": 60, "stale_after_seconds": 120}})
    assert "leases" in message and "stale_after_seconds 120" in message and "3 heartbeats" in message
    assert "wait_seconds" in config_error({**minimal(), "leases": {"wait_seconds": -1}})
