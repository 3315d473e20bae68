"""Every example of the README runs: each config snippet loads through the config loader, and each
command that gives a DAG params as JSON is accepted by that DAG's params (as the trigger form and the
REST API check them). A README example that stops working fails here, naming it."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from envsync.core.config import parse_config

README = Path(__file__).resolve().parents[2] / "README.md"
TEXT = README.read_text()
TOP_KEYS = (
    "project",
    "location",
    "prod",
    "environments",
    "tables",
    "sync",
    "seeds",
    "privacy",
    "state",
    "backups",
    "audit",
    "alerts",
)
PLACEHOLDERS = {"<ds>": "sales", "<dataset>": "sales", "<table>": "customers"}


def yaml_blocks() -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", TEXT, flags=re.S | re.M)


def base_config() -> dict[str, Any]:
    """The README's configuration block: the config every snippet is merged into."""
    [block] = [b for b in yaml_blocks() if b.startswith("project: envsync-demo")]
    return yaml.safe_load(block)


def split_block() -> str:
    """The README's split-projects configuration (section "Environments in their own projects")."""
    [block] = [b for b in yaml_blocks() if b.startswith("project:") and "\n  project: acme-prod" in b]
    return block


def test_the_split_projects_block_loads_with_its_projects() -> None:
    config = parse_config(yaml.safe_load(split_block()), "README.md")
    assert config.prod_project == "acme-prod"
    assert {env: config.project_of(env) for env in ("dev", "qa", "staging", "backup", "drill")} == {
        "dev": "acme-nonprod",
        "qa": "acme-nonprod",
        "staging": "acme-nonprod",
        "backup": "acme-backup",
        "drill": "acme-backup",
    }
    assert config.audit_project == config.state_project == "acme-nonprod"


def test_the_split_projects_block_s_dev_alternative_loads() -> None:
    block = split_block()
    [alternative] = re.findall(r"^  # (dev: \{.*\})$", block, flags=re.M)
    data = yaml.safe_load(block)
    data["environments"]["dev"] = yaml.safe_load(alternative)["dev"]
    config = parse_config(data, "README.md")
    assert config.project_of("dev") == "acme-dev"
    assert config.jobs_project_of("dev") == "acme-nonprod"
    assert config.env_dataset("dev", "sales") == "sales"


def commented_examples() -> list[tuple[str, list[str]]]:
    """The commented-out alternatives inside the README's YAML blocks (`# sales.x: {...}`, continued
    on the following comment lines until the braces close), grouped as the comments group them (a
    comment line of prose starts a new group; a group's lines go together), with the key they sit under."""
    groups: list[tuple[str, list[str]]] = []
    for block in yaml_blocks():
        section = None
        lines = block.splitlines()
        fresh = True
        i = 0
        while i < len(lines):
            line = lines[i]
            if re.match(r"^[a-z_]+:", line):
                section, fresh = line.split(":")[0], True
            match = re.match(r"^\s+#\s+([a-z_]+\.[a-z_]+:\s*\{.*)$", line)
            if match and section:
                text = match.group(1).split("  #")[0]
                while text.count("{") != text.count("}") and i + 1 < len(lines):
                    i += 1
                    text += " " + lines[i].split("#", 1)[1].strip()
                if fresh:
                    groups.append((section, []))
                    fresh = False
                groups[-1][1].append(text)
            elif re.match(r"^\s+#", line):
                fresh = True
            i += 1
    return groups


def inline_snippets() -> list[tuple[str, str]]:
    """`dotted.key: value` snippets in the prose whose value is YAML (a mapping or a list)."""
    keys = "|".join(TOP_KEYS)
    pattern = re.compile(r"`((?:" + keys + r")\.[A-Za-z0-9_.<>\-]+):\s*([\[{][^`]*)`", re.S)
    return [(m.group(1), m.group(2)) for m in pattern.finditer(TEXT)]


def merged(data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node.get(key), dict) or key not in node else node[key]
    node[path[-1]] = value
    return out


def dotted_path(key: str) -> list[str]:
    for placeholder, name in PLACEHOLDERS.items():
        key = key.replace(placeholder, name)
    parts = key.split(".")
    if parts[0] == "tables":  # tables are keyed `<dataset>.<table>`
        return ["tables", f"{parts[1]}.{parts[2]}", *parts[3:]]
    return parts


def test_the_readme_configuration_block_loads() -> None:
    config = parse_config(base_config(), "README.md")
    assert config.project and config.prod.datasets


@pytest.mark.parametrize("section, texts", commented_examples(), ids=lambda v: str(v)[:40])
def test_each_commented_alternative_of_the_configuration_block_loads(section: str, texts: list[str]) -> None:
    data = base_config()
    for text in texts:
        [(key, value)] = yaml.safe_load("{" + text + "}").items()
        data = merged(data, [section, key], value)
    parse_config(data, f"README.md: {texts}")


@pytest.mark.parametrize("key, value", inline_snippets(), ids=lambda v: str(v)[:40])
def test_each_config_snippet_in_the_prose_loads(key: str, value: str) -> None:
    data = merged(base_config(), dotted_path(key), yaml.safe_load(value))
    parse_config(data, f"README.md: {key}: {value}")


def test_the_masking_example_with_a_null_mask_loads() -> None:
    """`phone: null` is YAML's null; as a mask it is the null mask (the README's masking example)."""
    [(key, value)] = [s for s in inline_snippets() if s[0].endswith(".mask")]
    config = parse_config(merged(base_config(), dotted_path(key), yaml.safe_load(value)))
    assert config.tables["sales.customers"].mask["phone"] == "null"


def test_the_readme_has_the_examples_these_tests_read() -> None:
    assert (
        sum(len(t) for _, t in commented_examples()) >= 3 and len(inline_snippets()) >= 2 and len(dag_commands()) >= 10
    )


# ------------------------------------------------------------------------------ DAG commands


def dag_commands() -> list[tuple[str, dict[str, Any]]]:
    """(dag_id, conf) of every `airflow dags trigger|test <dag> ... -c|--conf '<json>'` and
    `airflow backfill create --dag-id <dag> ... [--dag-run-conf '<json>']` in the README."""
    found = []
    for line in re.findall(r"^\s*(airflow (?:dags (?:trigger|test)|backfill create) .*)$", TEXT, flags=re.M):
        words = shlex.split(line.split(" #")[0])
        if words[1] == "backfill":
            dag_id = words[words.index("--dag-id") + 1]
            conf = words[words.index("--dag-run-conf") + 1] if "--dag-run-conf" in words else "{}"
        else:
            dag_id = words[3]
            flag = next((w for w in ("-c", "--conf") if w in words), None)
            conf = words[words.index(flag) + 1] if flag else "{}"
        found.append((dag_id, json.loads(conf)))
    return found


@pytest.fixture(scope="module")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ENVSYNC_CONFIG", raising=False)
        bag = DagBag(dag_folder=str(README.parent / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.mark.parametrize("dag_id, conf", dag_commands(), ids=lambda v: str(v)[:50])
def test_each_dag_command_of_the_readme_is_accepted_by_the_dags_params(
    dagbag: Any, dag_id: str, conf: dict[str, Any]
) -> None:
    assert dag_id in dagbag.dags, f"README names DAG {dag_id!r}; DAGs: {sorted(dagbag.dags)}"
    params = copy.deepcopy(dagbag.dags[dag_id].params)
    unknown = sorted(set(conf) - set(params))
    assert not unknown, f"README: {dag_id} has no params {unknown}; its params are {sorted(params)}"
    for key, value in conf.items():
        params[key] = value
    params.validate()


def test_a_bad_param_in_a_command_would_be_refused(dagbag: Any) -> None:
    """The check above can fail: an out-of-range value is refused by the same validation."""
    from airflow.sdk.definitions.param import ParamValidationError

    params = copy.deepcopy(dagbag.dags["prod_to_dev_sync"].params)
    with pytest.raises((ParamValidationError, ValueError)):
        params["window_quarters"] = 99
        params.validate()
