"""Screenshot of the Airflow UI's trigger form of `prod_to_dev_sync`, for the README (docs/trigger-form.png).

Usage (from the repository root):

    .venv/bin/python scripts/screenshot_trigger_form.py [--output docs/trigger-form.png] [--timeout 90]
                                                        [--dag-id prod_to_dev_sync] [--chromium chromium]
                                                        [--keep-home]

What it does:
1. starts a real, throw-away Airflow cluster with the end-to-end harness (`tests/e2e/cluster.py`:
   a fresh Postgres database, api-server / scheduler / dag-processor on 127.0.0.1, LocalExecutor);
   parsing the DAGs needs only the configuration (ENVSYNC_CONFIG, default config/envsync.yaml), no
   BigQuery emulator;
2. waits until the dag-processor has serialized the DAG;
3. starts headless Chromium (`--remote-debugging-port` on 127.0.0.1, a temporary profile) and drives it
   through the Chrome DevTools Protocol over a WebSocket (the `websockets` package of .venv): sets the
   cluster's JWT as the `_token` cookie, opens `<api-server>/dags/<dag_id>`, clicks "Trigger", expands
   the "Run Parameters" section if it is collapsed, waits until every param's title is shown and the
   dialog has stopped moving, and captures the dialog's bounding box as a PNG;
4. always stops Chromium and the cluster (which drops its database and AIRFLOW_HOME).

Needs: PostgreSQL on 127.0.0.1:5432 accepting the user `postgres` without a password (trust), and
Debian's `chromium` package (plus `fonts-dejavu-core` for legible text). About 30-40 s on 2 cores.
Exit status: 0 on success, 1 on a failure (the message names the step, with the cluster's logs), 2 when
a prerequisite is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))

from cluster import AirflowCluster, ClusterError, free_port, postgres_reachable  # noqa: E402

DEFAULT_DAG_ID = "prod_to_dev_sync"
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "trigger-form.png"
WINDOW = (1440, 1200)
MARGIN = 0  # pixels of the page around the dialog in the picture


class ScreenshotError(RuntimeError):
    """A step in the browser failed or timed out."""


# --------------------------------------------------------------------------------------------------
# Chromium


class Chromium:
    """Headless Chromium with the DevTools endpoint on 127.0.0.1 and a throw-away profile."""

    def __init__(self, executable: str, window: tuple[int, int] = WINDOW) -> None:
        self.executable = executable
        self.window = window
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="envsync_chromium_"))
        self.profile = self.tmp / "profile"
        self.log_path = self.tmp / "chromium.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> str:
        """Start the browser; returns the WebSocket URL of its (only) page."""
        command = [
            self.executable, "--headless=new", "--no-sandbox", "--disable-gpu",
            f"--remote-debugging-port={self.port}", "--remote-debugging-address=127.0.0.1",
            f"--window-size={self.window[0]},{self.window[1]}", f"--user-data-dir={self.profile}",
            "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "about:blank",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # its own process group, see stop()
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=2.0) as http:
            while True:
                if self.proc.poll() is not None:
                    raise ScreenshotError(f"chromium exited ({self.proc.returncode}):\n{self.log()}")
                try:
                    pages = [t for t in http.get("/json/list").json() if t.get("type") == "page"]
                    if pages:
                        return str(pages[0]["webSocketDebuggerUrl"])
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() >= deadline:
                    raise ScreenshotError(f"chromium's DevTools endpoint did not answer in {timeout:.0f}s:\n{self.log()}")
                time.sleep(0.2)

    def log(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def _leftovers(self) -> list[int]:
        """Processes still using this browser's profile (renderers, zygotes, crashpad...)."""
        marker = str(self.profile).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    pass
        return found

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 5 s; then any process of this profile; remove it."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    self.proc.wait(timeout=5)
            if self.proc is not None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # children that outlived the main process
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while (left := self._leftovers()) and time.monotonic() < deadline:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# the Chrome DevTools Protocol


class CDP:
    """A minimal CDP client on one page's WebSocket: send a command, await its result; events are ignored."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") != msg_id:
                continue  # an event, or the answer to an abandoned command
            if "error" in message:
                raise ScreenshotError(f"{method}: {message['error']}")
            return dict(message.get("result") or {})

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise), or ScreenshotError if it throws."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise ScreenshotError(f"JavaScript error: {details.get('exception', {}).get('description') or details}")
        return result.get("result", {}).get("value")

    async def poll(self, expression: str, what: str, deadline: float, interval: float = 0.25) -> Any:
        """Evaluate `expression` until it yields something truthy; return it. ScreenshotError at the deadline."""
        last: Any = None
        while True:
            last = await self.evaluate(expression)
            if last:
                return last
            if time.monotonic() >= deadline:
                raise ScreenshotError(f"timed out waiting for {what} (last value: {last!r})")
            await asyncio.sleep(interval)


# JavaScript helpers, defined once in the page (they survive only until the next navigation).
JS_HELPERS = r"""
window.__envsync = {
  visible(el) {
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
  },
  text(el) { return (el.innerText || el.textContent || '').replace(/\s+/g, ' ').trim(); },
  button(label) {
    return [...document.querySelectorAll('button, [role="button"]')]
      .find(b => this.visible(b) && !b.disabled && this.text(b) === label) || null;
  },
  dialog() {
    return [...document.querySelectorAll('[role="dialog"], [role="alertdialog"]')].find(d => this.visible(d)) || null;
  },
  // the dialog's section headers (accordion triggers) whose label contains `label`, collapsed or not
  sections(label) {
    const d = this.dialog();
    if (!d) return [];
    return [...d.querySelectorAll('button[aria-expanded]')].filter(b => this.text(b).includes(label));
  },
  // every title shown in the dialog (a param's title is its label)
  shows(titles) {
    const d = this.dialog();
    if (!d) return false;
    const labels = [...d.querySelectorAll('label, legend, [data-part="label"]')]
      .filter(l => this.visible(l)).map(l => this.text(l));
    return titles.every(t => labels.some(l => l === t || l.startsWith(t + ' ') || l.startsWith(t + '*')));
  },
  rect() {
    const d = this.dialog();
    if (!d) return null;
    const r = d.getBoundingClientRect();
    return {x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height,
            scrollHeight: d.scrollHeight, clientHeight: d.clientHeight};
  },
};
true
"""


async def capture(page_ws: str, base_url: str, token: str, dag_id: str, titles: list[str], deadline: float,
                  window: tuple[int, int] = WINDOW) -> tuple[bytes, dict[str, Any]]:
    """Open the DAG's page, open its trigger form and return (PNG of the dialog, the dialog's rect)."""
    async with websockets.connect(page_ws, max_size=None, open_timeout=10) as ws:  # screenshots exceed 1 MiB
        cdp = CDP(ws)
        await cdp.send("Page.enable")
        await cdp.send("Network.enable")
        await cdp.send("Emulation.setDeviceMetricsOverride", width=window[0], height=window[1],
                       deviceScaleFactor=1, mobile=False)
        await cdp.send("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "light"}])
        # the UI takes the JWT from the `_token` cookie (as after a login), then keeps it in localStorage
        ok = await cdp.send("Network.setCookie", name="_token", value=token, url=base_url, path="/")
        if not ok.get("success", True):
            raise ScreenshotError("Network.setCookie refused the _token cookie")
        await cdp.send("Page.navigate", url=f"{base_url}/dags/{dag_id}")
        await cdp.poll("document.readyState === 'complete'", "the page to load", deadline)
        helpers = JS_HELPERS

        async def js(expression: str) -> Any:
            # re-define the helpers if the single-page app replaced the document (e.g. after a redirect)
            return await cdp.evaluate(f"(window.__envsync || eval({json.dumps(helpers)}), {expression})")

        async def poll(expression: str, what: str) -> Any:
            return await cdp.poll(f"(window.__envsync || eval({json.dumps(helpers)}), {expression})", what, deadline)

        await poll("!!__envsync.button('Trigger')", f"the 'Trigger' button on {base_url}/dags/{dag_id}")
        await js("__envsync.button('Trigger').click(), true")
        await poll("!!__envsync.dialog()", "the trigger dialog to open")

        # the params live in the "Run Parameters" accordion section: expand it if it is collapsed
        titles_js = json.dumps(titles)
        if not await js(f"__envsync.shows({titles_js})"):
            await poll("__envsync.sections('Run Parameters').length > 0 || __envsync.shows(" + titles_js + ")",
                       "the 'Run Parameters' section of the trigger form")
            await js("__envsync.sections('Run Parameters').filter(b => b.getAttribute('aria-expanded') !== 'true')"
                     ".forEach(b => b.click()), true")
        await poll(f"__envsync.shows({titles_js})", f"the params {titles} in the trigger form")
        await cdp.poll("document.fonts.ready.then(() => document.fonts.status === 'loaded')", "the fonts", deadline)

        async def stable_rect() -> dict[str, Any]:
            previous, stable = None, 0
            while stable < 3:
                rect = await js("__envsync.rect()")
                if rect is None:
                    raise ScreenshotError("the trigger dialog closed")
                stable = stable + 1 if rect == previous else 0
                previous = rect
                if time.monotonic() >= deadline:
                    raise ScreenshotError(f"the trigger dialog did not stop moving (last box: {rect})")
                await asyncio.sleep(0.2)
            return rect

        # the dialog animates in (and the form may still grow): wait until its box is stable; a dialog
        # taller than the window runs past its bottom (the page scrolls): then make the viewport taller
        height = window[1]
        while True:
            rect = await stable_rect()
            bottom = int(rect["y"] + rect["height"] + MARGIN + 16)
            if bottom <= height:
                break
            if bottom > 4000:
                raise ScreenshotError(f"the trigger dialog is unexpectedly tall: {rect}")
            height = bottom
            await cdp.send("Emulation.setDeviceMetricsOverride", width=window[0], height=height,
                           deviceScaleFactor=1, mobile=False)
        await js("document.activeElement && document.activeElement.blur(), true")  # no focus ring in the picture

        clip = {"x": max(0.0, rect["x"] - MARGIN), "y": max(0.0, rect["y"] - MARGIN),
                "width": rect["width"] + 2 * MARGIN, "height": rect["height"] + 2 * MARGIN, "scale": 1}
        shot = await cdp.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        return base64.b64decode(shot["data"]), rect


def param_titles(details: dict[str, Any]) -> list[str]:
    """The titles of the DAG's params (the form's labels), from GET /api/v2/dags/<id>/details."""
    titles = []
    for name, param in (details.get("params") or {}).items():
        schema = (param.get("schema") or {}) if isinstance(param, dict) else {}
        titles.append(str(schema.get("title") or name))
    return titles


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="PNG to write (default: %(default)s)")
    parser.add_argument("--dag-id", default=DEFAULT_DAG_ID)
    parser.add_argument("--chromium", default="chromium", help="the browser executable (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=90.0,
                        help="seconds for the DAG to appear and, again, for the browser steps (default: %(default)s)")
    parser.add_argument("--keep-home", action="store_true", help="keep the cluster's AIRFLOW_HOME (its logs)")
    args = parser.parse_args(argv)

    reason = postgres_reachable()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    executable = shutil.which(args.chromium)
    if executable is None:
        print(f"error: {args.chromium!r} not found (Debian: apt-get install chromium fonts-dejavu-core)",
              file=sys.stderr)
        return 2

    started = time.monotonic()
    config = os.environ.get("ENVSYNC_CONFIG") or str(REPO_ROOT / "config" / "envsync.yaml")
    cluster = AirflowCluster(extra_env={"ENVSYNC_CONFIG": config}, keep_home=args.keep_home)
    browser: Chromium | None = None
    try:
        cluster.start()
        print(f"cluster {cluster.name} up at {cluster.base_url} in {cluster.timings['start']:.1f}s", flush=True)
        details = cluster.wait_for_dag(args.dag_id, timeout=args.timeout)
        titles = param_titles(details)
        print(f"{args.dag_id} serialized after {time.monotonic() - started:.1f}s; params: {titles}", flush=True)

        deadline = time.monotonic() + args.timeout
        browser = Chromium(executable)
        page_ws = browser.start(timeout=30)
        png, rect = asyncio.run(asyncio.wait_for(
            capture(page_ws, cluster.base_url, cluster.token(), args.dag_id, titles, deadline),
            timeout=args.timeout + 10))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(png)
        print(f"wrote {args.output} ({len(png) / 1024:.0f} KB, dialog {rect['width']:.0f}x{rect['height']:.0f}) "
              f"after {time.monotonic() - started:.1f}s", flush=True)
    except (ScreenshotError, ClusterError, asyncio.TimeoutError, OSError, websockets.WebSocketException) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if browser is not None and not isinstance(exc, ClusterError):
            print(f"--- chromium log:\n{browser.log()}", file=sys.stderr)
        return 1
    finally:
        if browser is not None:
            browser.stop()
        cluster.stop()
        if args.keep_home:
            print(f"AIRFLOW_HOME kept: {cluster.home}", file=sys.stderr)
        print(f"stopped; total {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
