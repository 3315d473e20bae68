"""The client factory: emulator endpoints from the standard env vars, else the Airflow connection."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from envsync.core import clients


def test_emulator_env_vars_give_anonymous_clients_on_those_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9050")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9023")
    with mock.patch.object(clients, "_connection_fields") as conn:
        bq = clients.bigquery_client("envsync-demo", "US")
        gcs = clients.storage_client("envsync-demo")
    conn.assert_not_called()  # the Airflow connection is not consulted
    assert isinstance(bq._credentials, AnonymousCredentials)
    assert bq._connection.API_BASE_URL == "http://127.0.0.1:9050"  # host:port gets a scheme
    assert bq.project == "envsync-demo" and bq.location == "US"
    assert gcs._connection.API_BASE_URL == "http://127.0.0.1:9023"


def test_connection_key_json_is_used_and_the_jobs_project_passed_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The project passed is where jobs run (an environment's jobs_project); the connection's project
    is only the fallback when none is passed."""
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    fields = {"project": "conn-project", "keyfile_dict": json.dumps({"type": "service_account"})}
    fake = mock.Mock(project_id="key-project")
    with (
        mock.patch.object(clients, "_connection_fields", return_value=fields),
        mock.patch(
            "google.oauth2.service_account.Credentials.from_service_account_info", return_value=fake
        ) as from_info,
        mock.patch("google.cloud.bigquery.Client") as client,
    ):
        clients.bigquery_client("config-project", "EU")
        clients.bigquery_client("", "EU")
    assert from_info.call_args_list == [mock.call({"type": "service_account"}, scopes=clients._SCOPES)] * 2
    assert client.call_args_list == [
        mock.call(project="config-project", location="EU", credentials=fake),
        mock.call(project="conn-project", location="EU", credentials=fake),
    ]


def test_legacy_prefixed_extras_and_key_path(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = mock.Mock(
        extra_dejson={
            "extra__google_cloud_platform__key_path": "/keys/sa.json",
            "extra__google_cloud_platform__scope": "a, b",
        }
    )
    with mock.patch("airflow.sdk.BaseHook.get_connection", return_value=conn):
        fields = clients._connection_fields("google_cloud_default")
    assert fields == {"key_path": "/keys/sa.json", "scope": "a, b"}
    fake = mock.Mock(project_id="p")
    with mock.patch(
        "google.oauth2.service_account.Credentials.from_service_account_file", return_value=fake
    ) as from_file:
        assert clients._credentials(fields) == (fake, "p")
    from_file.assert_called_once_with("/keys/sa.json", scopes=["a", "b"])


def test_missing_connection_falls_back_to_application_default_credentials() -> None:
    from airflow.sdk.exceptions import AirflowNotFoundException

    with mock.patch("airflow.sdk.BaseHook.get_connection", side_effect=AirflowNotFoundException("nope")):
        assert clients._connection_fields("google_cloud_default") == {}
    adc = mock.Mock()
    with mock.patch("google.auth.default", return_value=(adc, "adc-project")) as default:
        assert clients._credentials({}) == (adc, "adc-project")
    default.assert_called_once_with(scopes=clients._SCOPES)
