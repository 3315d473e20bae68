"""Slack messages of deploys, smoke tests and rollbacks, sent the way envsync's run alerts are.

They go through `envsync.observe.alerts.post`: the Airflow Slack provider's webhook notifier and an
Airflow connection of type `slackwebhook` (default `slack_envsync`, the config's `alerts.slack_conn_id`;
outside Airflow give it as `AIRFLOW_CONN_SLACK_ENVSYNC`). With no connection, or Slack unreachable, the
message is logged and the deploy goes on: a notification never fails a deploy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "slack_envsync"
ICONS = {
    "deployed": ":rocket:",
    "failed": ":x:",
    "refused": ":no_entry:",
    "smoke_passed": ":white_check_mark:",
    "smoke_failed": ":x:",
    "rolled_back": ":rewind:",
}


def message(entry: dict[str, Any]) -> dict[str, Any]:
    """The Slack payload (`text` and `blocks`) of one ledger entry (pure)."""
    result = str(entry["result"])
    env = entry.get("environment") or "-"
    release = entry.get("release") or "-"
    digest = str(entry.get("digest") or "")[:12] or "-"
    who = entry.get("actor") or "-"
    bucket = entry.get("bucket") or "-"
    action = entry.get("action") or "deploy"
    if result == "deployed":
        head = f"envsync *{entry.get('version')}* deployed to *{env}* by {who}"
        detail = (
            f"release {release} (digest {digest}) is live in gs://{bucket}; was {entry.get('previous') or 'nothing'}"
        )
    elif result == "rolled_back":
        head = f"envsync *{env}* rolled back by {who}"
        detail = f"from {entry.get('from') or 'nothing'} to {release} (digest {digest}) in gs://{bucket}"
    elif result in ("smoke_passed", "smoke_failed"):
        verdict = "passed" if result == "smoke_passed" else "FAILED"
        head = f"envsync smoke test of *{release}* on *{env}* {verdict}"
        detail = str(entry.get("summary") or entry.get("reason") or "")
    elif result == "refused":
        head = f"envsync {action} on *{env}* REFUSED ({who})"
        detail = str(entry.get("reason") or "")
    else:
        head = f"envsync {action} of *{release}* to *{env}* FAILED ({who})"
        detail = f"{entry.get('reason') or ''}; the previous release stays live"
    text = f"{ICONS.get(result, ':grey_question:')} {head}\n{detail}".rstrip()
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def slack(conn_id: str = DEFAULT_CONN_ID) -> Callable[[dict[str, Any]], None]:
    """A notifier of ledger entries through Slack connection `conn_id` (never raises)."""

    def send(entry: dict[str, Any]) -> None:
        from envsync.observe.alerts import post

        payload = message(entry)
        log.info("Slack (%s): %s", conn_id, payload["text"].replace("\n", " | "))
        context = {"dag": SimpleNamespace(dag_id=f"envsync {entry.get('action') or 'deploy'}")}  # names it in the log
        post(conn_id, payload, context, kind=str(entry.get("result")))

    return send
