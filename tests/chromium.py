"""Debian's headless Chromium driven by Selenium, for the tests that need a real browser.

Chromium and its WebDriver are Debian's (`apt-get install chromium chromium-driver`; `.ci/run` installs them).
Selenium is given both paths, so Selenium Manager is never run and nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver") or "/usr/bin/chromedriver"

# Chromium on a closed network: no sandbox (root in a container), no GPU, and none of its own connections to Google
# (which the network refuses) for updates, sync, field trials or QUIC probes.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
)


@contextlib.contextmanager
def chromium(folder: Path, monkeypatch: pytest.MonkeyPatch, *flags: str) -> Iterator[Any]:
    """A Selenium driver of a fresh headless Chromium (profile and driver log in `folder`), with extra `flags`."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"Headless Chromium is missing ({', '.join(missing)} not found): `.ci/run` installs Debian's "
            "`chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`); "
            "or set CHROMIUM_BIN and CHROMEDRIVER_BIN."
        )
    try:
        from selenium import webdriver
    except ImportError:
        pytest.fail("Selenium is missing: `pip install -e '.[test]'` (scripts/test installs the test extras).")
    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: with a driver path Selenium Manager is not run
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, *flags, f"--user-data-dir={folder / 'chromium-profile'}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER, log_output=str(folder / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
