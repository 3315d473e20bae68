"""The Airflow plugin of envsync's page: "envsync" in the UI's navigation, served by the api-server.

Airflow 3 plugins add pages to the UI with a FastAPI app (`fastapi_apps`, mounted by the api-server
under its `url_prefix`) and an external view (`external_views`) that links it from the navigation and,
with a `url_route`, shows it inside the UI (https://airflow.apache.org/docs/apache-airflow/stable/administration-and-deployment/plugins.html).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from envsync.ui.app import URL_PREFIX, create_app


class EnvsyncUIPlugin(AirflowPlugin):
    name = "envsync"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "envsync"}]
    external_views = [
        {
            "name": "envsync",
            "href": URL_PREFIX.lstrip("/") + "/",  # relative to the UI's base URL
            "url_route": "envsync",  # shown inside the UI at <base>/plugin/envsync
            "destination": "nav",
            "category": "browse",
        }
    ]
