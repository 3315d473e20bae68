"""A local HTTP server standing in for a Slack webhook: it records every JSON payload posted to it.
The `webhook` fixture points the config's Slack connection (slack_envsync) at it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Webhook:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.paths: list[str] = []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                webhook.posts.append(json.loads(body))
                webhook.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    hook = Webhook()
    # the connection the config names (alerts.slack_conn_id: slack_envsync), pointing at the local server
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_ENVSYNC",
        json.dumps({"conn_type": "slackwebhook", "password": f"{hook.url}/services/T000/B000/XXXX"}),
    )
    yield hook
    hook.stop()
