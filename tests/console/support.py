"""What the console's tests share: a console config over given services, and Debian's
chromium driven by Playwright (never downloaded: /usr/bin/chromium).

Set CONSOLE_SCREENSHOTS to a folder to keep a screenshot of each page a browser test
visits there (docs/console/ holds the committed ones).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from forgeline.client.channel import ChannelOptions
from forgeline.common.settings import ServiceName
from forgeline.console.config import ConsoleConfig

TOKEN = "console-test-token"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
UNREACHABLE = "127.0.0.1:9"  # the discard port: nothing answers gRPC there


def console_config(
    *,
    token: str = TOKEN,
    channel: ChannelOptions | None = None,
    gateway_url: str = "http://127.0.0.1:9",
    gateway_key: str = "",
    **addresses: str,
) -> ConsoleConfig:
    """A console config calling the services given by name (`registry="host:port"`); the
    others are unreachable."""
    return ConsoleConfig(
        addresses={s: addresses.get(s.value, UNREACHABLE) for s in ServiceName},
        channel=channel or ChannelOptions(retries=False),
        gateway_url=gateway_url,
        gateway_key=gateway_key,
        token=token,
    )


@contextmanager
def browser() -> Iterator:
    """A Playwright page in Debian's headless chromium; skips the test without one."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip("chromium is not installed (apt-get install chromium; CI has it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = chromium.new_page(viewport={"width": 1200, "height": 820})
            page.set_default_timeout(30_000)
            yield page
        finally:
            chromium.close()


def log_in(page, url: str, token: str = TOKEN, path: str = "/") -> None:
    """Opens the console at `path` and logs in with `token`."""
    page.goto(url + path)
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")


def screenshot(page, name: str) -> None:
    """Keeps a screenshot of the page as `<CONSOLE_SCREENSHOTS>/<name>.png` when asked."""
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))
