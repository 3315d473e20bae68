"""ZetaSQL's WebAssembly build (PyPI ``zetasql``), run in-process by wasmtime, with a compiled-module cache.

Why not ``zetasql.api``: its client compiles the 28 MB module in every process (~28 s, ~1 GB) and
copies request and response bytes one at a time through ctypes. This module keeps the same wasm
binary and protobuf messages, but

- compiles once and caches the compiled module (``wasmtime.Module.serialize``) in a directory, named
  after the wasm file's hash and wasmtime's version: later starts deserialize it in under a second;
- copies messages with one memmove each way;
- serialises calls with a lock: one wasm instance is not re-entrant, and local-bigquery runs jobs in
  threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import re
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from google.protobuf import message

log = logging.getLogger("bqfidelity.zsql")

M = TypeVar("M", bound=message.Message)

_SIZE_T = 4  # wasm32


class ZetaSQLError(Exception):
    """ZetaSQL answered a call with an error status; ``message`` is its text (code prefix removed)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def wasm_path() -> Path:
    from zetasql.wasi import get_wasm_path

    return Path(get_wasm_path())


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def cache_file(cache_dir: Path, wasm: Path) -> Path:
    """Where the compiled module of wasm lives for this wasmtime version."""
    wasmtime_version = metadata.version("wasmtime")
    return cache_dir / f"zetasql-{_file_digest(wasm)}-wasmtime{wasmtime_version}.cwasm"


def _engine():  # wasmtime types are imported lazily
    from wasmtime import Config, Engine

    config = Config()
    with contextlib.suppress(AttributeError):
        config.shared_memory = True
    return Engine(config)


def load_module(engine, cache_dir: Path | None) -> tuple[object, str, float]:
    """The compiled module: from cache_dir when there, else compiled (and cached when cache_dir is set).

    Returns (module, how, seconds) with how "cache" or "compiled". Concurrent processes sharing
    cache_dir compile once: the others wait on a lock file, then load the cached result.
    """
    from wasmtime import Module, WasmtimeError

    wasm = wasm_path()
    start = time.monotonic()
    if cache_dir is None:
        return Module.from_file(engine, str(wasm)), "compiled", time.monotonic() - start
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_file(cache_dir, wasm)
    with (cache_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if target.exists():
                try:
                    module = Module.deserialize_file(engine, str(target))
                    return module, "cache", time.monotonic() - start
                except WasmtimeError as error:  # another wasmtime build, or a damaged file
                    log.warning("ignoring the cached ZetaSQL module %s: %s", target, error)
            log.info("compiling ZetaSQL's WebAssembly module (once; about 30 s and 1 GB)")
            module = Module.from_file(engine, str(wasm))
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(module.serialize())
            tmp.replace(target)
            return module, "compiled", time.monotonic() - start
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class Engine:
    """One instance of ZetaSQL's local service; ``call(name, request, response_type)`` is thread-safe."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        from wasmtime import Linker, Store, WasiConfig

        self.lock = threading.Lock()
        engine = _engine()
        self.module, self.loaded_from, self.load_seconds = load_module(engine, cache_dir)
        start = time.monotonic()
        wasi = WasiConfig()
        wasi.inherit_stderr()
        zoneinfo = _zoneinfo_dir()
        if zoneinfo:
            wasi.preopen_dir(zoneinfo, "/usr/share/zoneinfo")
        self.store = Store(engine)
        self.store.set_wasi(wasi)
        linker = Linker(engine)
        linker.define_wasi()
        instance = linker.instantiate(self.store, self.module)
        self.exports = instance.exports(self.store)
        with contextlib.suppress(KeyError):
            self.exports["_initialize"](self.store)
        self.memory = self.exports["memory"]
        self.instantiate_seconds = time.monotonic() - start

    def call(self, method: str, request: message.Message, response_type: type[M]) -> M:
        """Call ``ZetaSqlLocalService_<method>``; raises ZetaSQLError with ZetaSQL's message."""
        data = request.SerializeToString()
        fn = self.exports[f"ZetaSqlLocalService_{method}"]
        malloc, free = self.exports["wasm_malloc"], self.exports["wasm_free"]
        store = self.store
        with self.lock:
            req = malloc(store, max(len(data), 1))
            size_ptr = malloc(store, _SIZE_T)
            try:
                ctypes.memmove(self._base() + req, data, len(data))
                resp = fn(store, req, len(data), size_ptr)
                if resp == 0:
                    raise _error(self._last_error())
                size = int.from_bytes(self._read(size_ptr, _SIZE_T), "little")
                payload = self._read(resp, size)
                free(store, resp)
            finally:
                free(store, req)
                free(store, size_ptr)
        return response_type.FromString(payload)

    def _base(self) -> int:
        # The module's memory is a wasm SharedMemory (built with threads): no read/write helpers, so
        # copy through its base address (fetched per call: growing the memory may move it).
        return ctypes.addressof(self.memory.data_ptr().contents)

    def _read(self, ptr: int, size: int) -> bytes:
        return ctypes.string_at(self._base() + ptr, size)

    def _last_error(self) -> str:
        size = self.exports["wasm_get_last_error_size"](self.store)
        if not size:
            return ""
        ptr = self.exports["wasm_get_last_error"](self.store)
        return self._read(ptr, size).decode("utf-8", "replace")


_STATUS = re.compile(r"Code: (\d+), Message: (.*)", re.DOTALL)
# absl::StatusCode names, by number.
_CODES = {3: "INVALID_ARGUMENT", 5: "NOT_FOUND", 9: "FAILED_PRECONDITION", 12: "UNIMPLEMENTED", 13: "INTERNAL"}


def _error(text: str) -> ZetaSQLError:
    # The wasm build reports an absl::Status as "Code: <n>, Message: <text>".
    match = _STATUS.match(text)
    if match:
        return ZetaSQLError(_CODES.get(int(match.group(1)), f"CODE_{match.group(1)}"), match.group(2))
    return ZetaSQLError("UNKNOWN", text)


def _zoneinfo_dir() -> str | None:
    try:
        import tzdata
    except ImportError:
        return None
    path = Path(tzdata.__file__).parent / "zoneinfo"
    return str(path) if path.is_dir() else None
