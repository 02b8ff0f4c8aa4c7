"""A headless Chromium driven by Selenium, for the tests that need a real browser.

Chromium and its ChromeDriver are CHROMIUM_BIN and CHROMEDRIVER_BIN, else the system's (Debian's `chromium` and
`chromium-driver`, which `.ci/run` installs), else the registry copy that `scripts/test` puts in .cache/chromium/
(scripts/_chromium.sh). Selenium is given both paths, so Selenium Manager is never run and nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT


def _pair() -> tuple[str, str]:
    """Chromium and its ChromeDriver: both from the environment, both from PATH, or the copy scripts/test fetched."""
    chosen = os.environ.get("CHROMIUM_BIN"), os.environ.get("CHROMEDRIVER_BIN")
    if all(chosen):
        return chosen  # type: ignore[return-value]
    system = shutil.which("chromium"), shutil.which("chromedriver")
    if all(system):
        return system  # type: ignore[return-value]
    fetched = max((ROOT / ".cache" / "chromium").glob("*/chromium"), default=None)
    if fetched:
        return str(fetched), str(fetched.with_name("chromedriver"))
    return chosen[0] or system[0] or "chromium", chosen[1] or system[1] or "chromedriver"


CHROMIUM, CHROMEDRIVER = _pair()

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
            f"Headless Chromium is missing ({', '.join(missing)} not found): `./scripts/test` fetches one into "
            ".cache/chromium/ on Linux x86-64 (and says why when it cannot); or install Debian's `chromium` "
            "and `chromium-driver` (`apt-get install -y chromium chromium-driver`); or set CHROMIUM_BIN and "
            "CHROMEDRIVER_BIN."
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
