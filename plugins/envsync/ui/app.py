"""The FastAPI app of the envsync page, mounted by Airflow's api-server under URL_PREFIX.

    GET <URL_PREFIX>/            the page (HTML with inline SVG plots; ?tables=all draws every table's
                                 backup timeline, not only the COVERAGE_ROWS with the largest gaps)
    GET <URL_PREFIX>/data.json   the same figures as JSON

Both need a signed-in Airflow user (the UI's `_token` cookie or an `Authorization: Bearer` JWT,
checked by Airflow's own auth dependency: access to the website). Figures are read through envsync's
client factory (envsync.core.clients) with the config of ENVSYNC_CONFIG, and kept for a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from html import escape
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from envsync.ui.data import CACHE_SECONDS, Dashboard, DashboardCache, DashboardReader

log = logging.getLogger(__name__)

URL_PREFIX = "/envsync"
CONN_ID_ENV = "ENVSYNC_UI_CONN_ID"


def read_dashboard() -> Dashboard:
    """Read the page's figures with the configured clients (no cache)."""
    import os

    from envsync.core.clients import DEFAULT_CONN_ID, bigquery_client, storage_client
    from envsync.core.config import load_config
    from envsync.core.manifest import ManifestStore

    config = load_config()
    conn_id = os.environ.get(CONN_ID_ENV) or DEFAULT_CONN_ID
    storage = storage_client(config.state_project, conn_id)
    store = ManifestStore(storage, config.state.bucket)
    exports = ManifestStore(storage, config.export_bucket) if config.export_bucket != config.state.bucket else None
    # the page's queries (reads only) run in the audit project, where most of what it reads lives
    client = bigquery_client(config.jobs_project_of("audit"), config.location, conn_id)
    reader = DashboardReader(config, client, store, exports)
    return reader.read()


def _airflow_auth() -> Callable[..., Any]:
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view

    return requires_access_view(AccessView.WEBSITE)


def create_app(
    load: Callable[[], Dashboard] = read_dashboard,
    *,
    auth: Callable[..., Any] | None = None,
    cache: DashboardCache | None = None,
) -> FastAPI:
    """The app; `load` reads the figures (cached for a minute), `auth` is the access dependency
    (default: Airflow's "may use the website" check)."""
    from envsync.ui.page import COVERAGE_ROWS, render_page

    cache = cache or DashboardCache(CACHE_SECONDS)
    access = auth or _airflow_auth()
    app = FastAPI(title="envsync", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(access)])

    def board() -> Dashboard:
        return cache.get("dashboard", load)

    def ui_root(request: Request) -> str:
        """The Airflow UI's root path, as the browser sees it (behind a proxy too)."""
        return str(request.scope.get("root_path") or "").rstrip("/").removesuffix(URL_PREFIX)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, tables: str | None = None) -> HTMLResponse:
        try:
            dashboard = board()
        except Exception as error:  # BigQuery or GCS unreachable, bad credentials, a bad config...
            log.exception("could not read the envsync page's figures")
            return HTMLResponse(
                "<!doctype html><html><body><h1>envsync</h1><p>could not read envsync's figures: "
                f"{escape(type(error).__name__)}: {escape(str(error))}</p></body></html>",
                status_code=503,
            )
        limit = None if tables == "all" else COVERAGE_ROWS
        return HTMLResponse(
            render_page(dashboard, ui_root=ui_root(request), coverage_limit=limit),
            headers={"Cache-Control": f"private, max-age={CACHE_SECONDS}"},
        )

    @app.get("/data.json")
    def data() -> JSONResponse:
        try:
            return JSONResponse(board().to_json())
        except Exception as error:
            log.exception("could not read the envsync page's figures")
            return JSONResponse({"error": f"{type(error).__name__}: {error}"}, status_code=503)

    return app
