"""``python -m bqfidelity.gcs start ...``: gcp-storage-emulator with Cloud Storage's request preconditions.

What Cloud Storage does (https://cloud.google.com/storage/docs/request-preconditions): a request may
carry ``ifGenerationMatch``, ``ifGenerationNotMatch``, ``ifMetagenerationMatch`` and
``ifMetagenerationNotMatch``; when one does not hold the request fails with **412 Precondition Failed**
(reason ``conditionNotMet``) and changes nothing. ``ifGenerationMatch=0`` succeeds only if there are no
live versions of the object: a create that cannot succeed twice. Object writes, metadata updates and
deletes are strongly consistent (https://cloud.google.com/storage/docs/consistency). envsync's
environment leases and its read-modify-write of JSON documents in the state bucket rely on both.

What gcp-storage-emulator 2026.7.19 does: it ignores every precondition. A second create with
``ifGenerationMatch=0`` overwrote the first, an upload or delete with a wrong generation succeeded.
This module checks the preconditions of uploads (media, multipart, resumable: on the request that
starts the upload), deletes, metadata patches and reads, atomically with the write (one lock around the
check and the write), and answers 412 as Cloud Storage does (304 for a read whose NotMatch condition
fails).
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

log = logging.getLogger("bqfidelity.gcs")

_LOCK = threading.RLock()
CONDITIONS = ("ifGenerationMatch", "ifGenerationNotMatch", "ifMetagenerationMatch", "ifMetagenerationNotMatch")
PRECONDITION_MESSAGE = "At least one of the pre-conditions you specified did not hold."


def _query(request: Any, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


def _object_name(request: Any) -> str | None:
    params = getattr(request, "params", {}) or {}
    if params.get("object_id"):
        return str(params["object_id"])
    name = _query(request, "name")
    if name:
        return name
    data = getattr(request, "data", None)
    if isinstance(data, dict):
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else data
        if isinstance(meta, dict) and meta.get("name"):
            return str(meta["name"])
    return None


def failed_condition(request: Any, storage: Any) -> str | None:
    """The precondition of `request` that does not hold on the object as it is now (None: all hold)."""
    from gcp_storage_emulator.exceptions import NotFound

    asked = {name: _query(request, name) for name in CONDITIONS}
    asked = {k: v for k, v in asked.items() if v is not None}
    if not asked:
        return None
    bucket, name = (getattr(request, "params", {}) or {}).get("bucket_name"), _object_name(request)
    try:
        current = storage.get_file_obj(bucket, name) if bucket and name else None
    except NotFound:
        current = None
    generation = str(current["generation"]) if current else "0"
    metageneration = str(current.get("metageneration", "1")) if current else None
    for condition, value in asked.items():
        if condition == "ifGenerationMatch" and value != generation:
            return condition
        if condition == "ifGenerationNotMatch" and value == generation:
            return condition
        if condition == "ifMetagenerationMatch" and value != metageneration:
            return condition
        if condition == "ifMetagenerationNotMatch" and value == metageneration:
            return condition
    return None


def _refuse(response: Any, condition: str, *, read: bool) -> None:
    if read and condition.endswith("NotMatch"):
        response.status = HTTPStatus.NOT_MODIFIED
        return
    response.status = HTTPStatus.PRECONDITION_FAILED
    response.json(
        {
            "error": {
                "code": 412,
                "message": PRECONDITION_MESSAGE,
                "errors": [
                    {
                        "message": PRECONDITION_MESSAGE,
                        "domain": "global",
                        "reason": "conditionNotMet",
                        "locationType": "header",
                        "location": condition,
                    }
                ],
            }
        }
    )


def with_preconditions(handler: Callable[..., Any], *, read: bool = False) -> Callable[..., Any]:
    @functools.wraps(handler)
    def checked(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            condition = failed_condition(request, storage)
            if condition is not None:
                log.info("412: %s does not hold for %s", condition, _object_name(request))
                return _refuse(response, condition, read=read)
            return handler(request, response, storage, *args, **kwargs)

    checked.__bqfidelity__ = True  # type: ignore[attr-defined]
    return checked


def install() -> list[str]:
    """Wrap the emulator's object handlers (idempotent); returns what was patched."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    wrapped: dict[Any, Any] = {}
    for name, read in (("insert", False), ("delete", False), ("patch", False), ("get", True), ("download", True)):
        original = getattr(objects, name)
        if getattr(original, "__bqfidelity__", False):
            continue
        checked = with_preconditions(original, read=read)
        wrapped[original] = checked
        setattr(objects, name, checked)
    for _pattern, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler in wrapped:
                handlers[method] = wrapped[handler]
    return sorted(f.__name__ for f in wrapped)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.info("GCS request preconditions applied to: %s", ", ".join(install()) or "none")
    from gcp_storage_emulator.__main__ import main as emulator_main

    emulator_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
