"""Build BigQuery and GCS clients: the one client factory of envsync.

When `BIGQUERY_EMULATOR_HOST` / `STORAGE_EMULATOR_HOST` are set (host:port or URL), anonymous
clients talk to those endpoints. Otherwise credentials come from the Airflow connection
(`google_cloud_default` by default) with the same fields as the Google provider's connection:
`project`, `key_path`, `keyfile_dict` (JSON), `scope`; or application default credentials when none
is given. Nothing else in envsync knows whether it talks to an emulator.

The `project` a caller passes is where the client's jobs run and are billed (an environment's
`jobs_project`, README "Environments in their own projects"); the connection's `project` is used only
when the caller passes none.

Every BigQuery client is paced: its requests wait for a slot under BigQuery's per-method rate
limits, and refusals by a rate or quota limit are counted (`envsync.core.limits`).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import google.cloud.storage as storage  # the form mypy resolves in the google.cloud namespace
    from google.auth.credentials import Credentials
    from google.cloud import bigquery

DEFAULT_CONN_ID = "google_cloud_default"
BIGQUERY_EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"
STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def _endpoint(value: str) -> str:
    return value if "://" in value else f"http://{value}"


def _connection_fields(conn_id: str) -> dict[str, Any]:
    """Extras of the Airflow connection, accepting both plain and `extra__google_cloud_platform__` keys."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return {}  # no connection: application default credentials
    extra = conn.extra_dejson or {}
    prefix = "extra__google_cloud_platform__"
    fields = {key.removeprefix(prefix): value for key, value in extra.items()}
    return fields


def _credentials(fields: dict[str, Any]) -> tuple[Credentials, str | None]:
    import google.auth
    from google.oauth2 import service_account

    scopes = [s.strip() for s in str(fields.get("scope") or "").split(",") if s.strip()] or _SCOPES
    if fields.get("key_path"):
        creds = service_account.Credentials.from_service_account_file(fields["key_path"], scopes=scopes)
        return creds, creds.project_id
    if fields.get("keyfile_dict"):
        info = fields["keyfile_dict"]
        info = json.loads(info) if isinstance(info, str) else info
        creds = service_account.Credentials.from_service_account_info(info, scopes=scopes)
        return creds, creds.project_id
    creds, project = google.auth.default(scopes=scopes)
    return creds, project


def bigquery_client(project: str, location: str | None = None, conn_id: str = DEFAULT_CONN_ID) -> bigquery.Client:
    from google.api_core.client_options import ClientOptions
    from google.cloud import bigquery

    host = os.environ.get(BIGQUERY_EMULATOR_ENV)
    if host:
        from google.auth.credentials import AnonymousCredentials

        return _paced(
            bigquery.Client(
                project=project,
                location=location,
                credentials=AnonymousCredentials(),
                client_options=ClientOptions(api_endpoint=_endpoint(host)),
            )
        )
    fields = _connection_fields(conn_id)
    creds, _ = _credentials(fields)
    return _paced(bigquery.Client(project=project or fields.get("project"), location=location, credentials=creds))


def _paced(client: bigquery.Client) -> bigquery.Client:
    """Every request of `client` is paced under BigQuery's per-method rate limits and its refusals
    counted (`envsync.core.limits`): the adapter is mounted on the client's HTTP session."""
    from envsync.core.limits import paced_adapter

    session = client._http  # google.auth's AuthorizedSession, a requests.Session
    adapter = paced_adapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return client


def storage_client(project: str, conn_id: str = DEFAULT_CONN_ID) -> storage.Client:
    import google.cloud.storage as storage  # the form mypy resolves in the google.cloud namespace
    from google.api_core.client_options import ClientOptions

    host = os.environ.get(STORAGE_EMULATOR_ENV)
    if host:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=_endpoint(host)),
        )
    fields = _connection_fields(conn_id)
    creds, _ = _credentials(fields)
    return storage.Client(project=project or fields.get("project"), credentials=creds)
