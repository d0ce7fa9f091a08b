"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` (``make tools``)
driven by Playwright, never a browser of Playwright's own download."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
"""Screenshots of the browser tests (a failing test leaves ``<name>-failed.png``)."""


def installed(executable: str) -> bool:
    return Path(executable).is_file()


def require_chromium() -> None:
    if not installed(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: run `make tools` (as root it installs Debian's chromium)"
        )


@dataclass
class Browsed:
    """A page of a fresh browser, and the uncaught errors of its scripts so far."""

    page: Page
    errors: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def chromium_page(name: str, **page_options: Any) -> AsyncIterator[Browsed]:
    """A page of a fresh headless Chromium (``page_options``: ``browser.new_page``'s). When
    the block fails, a full-page screenshot goes to ``test-artifacts/<name>-failed.png``
    first."""
    require_chromium()
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            browsed = Browsed(await browser.new_page(**page_options))
            browsed.page.on("pageerror", lambda error: browsed.errors.append(str(error)))
            try:
                yield browsed
            except BaseException:
                with contextlib.suppress(PlaywrightError):
                    path = ARTIFACTS / f"{name}-failed.png"
                    await browsed.page.screenshot(path=str(path), full_page=True)
                raise
        finally:
            await browser.close()
