"""Browser helpers of the end-to-end tests and screenshot scripts: Playwright driving Debian's chromium.

Playwright's own browser download is not used: it launches the system's `chromium` (Debian package
`chromium`, plus `fonts-dejavu-core` for legible text) through `executable_path`, headless.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM_ENV = "ENVSYNC_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "install it with: apt-get install -y chromium fonts-dejavu-core"


def chromium_path() -> str:
    """The chromium executable: $ENVSYNC_CHROMIUM, else /usr/bin/chromium."""
    return os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM


def chromium_missing() -> str | None:
    """None when chromium can be launched, else why not (the reason a browser test is skipped with)."""
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)) and shutil.which(path) is None:
        return f"browser tests need Debian's chromium at {path} (or ${CHROMIUM_ENV}); {INSTALL_HINT}"
    return None


def launch_args() -> dict[str, Any]:
    return {
        "executable_path": chromium_path(),
        "headless": True,
        "args": ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    }


@contextmanager
def browser() -> Iterator[Any]:
    """A headless chromium (Playwright's sync API), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(**launch_args())
        try:
            yield instance
        finally:
            instance.close()


def signed_in_context(browser: Any, base_url: str, token: str, *, width: int = 1440, height: int = 1000) -> Any:
    """A browser context signed in to Airflow: the JWT as the `_token` cookie, as after a login."""
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme="light", base_url=base_url)
    context.add_cookies([{"name": "_token", "value": token, "url": base_url}])
    return context


def param_titles(details: dict[str, Any]) -> list[str]:
    """The titles of the DAG's params (the form's labels), from GET /api/v2/dags/<id>/details."""
    titles = []
    for name, param in (details.get("params") or {}).items():
        schema = (param.get("schema") or {}) if isinstance(param, dict) else {}
        titles.append(str(schema.get("title") or name))
    return titles


def capture_trigger_form(page: Any, dag_id: str, titles: list[str], *, timeout_ms: float = 60_000) -> bytes:
    """Open the DAG's page, open its trigger form, expand "Run Parameters" and return a PNG of the dialog
    once every param title is shown."""
    from playwright.sync_api import expect

    page.goto(f"/dags/{dag_id}")
    page.locator("button").filter(has_text=re.compile(r"^\s*Trigger\s*$")).first.click(timeout=timeout_ms)
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible(timeout=timeout_ms)

    def label(title: str) -> Any:  # a param's label: its title, with " *" when it is required
        return dialog.get_by_text(re.compile(rf"^\s*{re.escape(title)}\s*\*?\s*$")).first

    if titles and not label(titles[0]).is_visible():
        section = dialog.locator("button[aria-expanded]", has_text="Run Parameters").first
        if section.get_attribute("aria-expanded") != "true":
            section.click()
    for title in titles:
        expect(label(title)).to_be_visible(timeout=timeout_ms)
    page.evaluate("document.fonts.ready")
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring in the picture
    page.wait_for_timeout(500)  # the dialog's opening animation
    return bytes(dialog.screenshot(animations="disabled"))
