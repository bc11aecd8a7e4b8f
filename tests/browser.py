"""Headless Chromium for the tests that look at a page as a user would; found, never assumed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = "apt-get install -y chromium (CI installs it: .ci/run with CI=true)"


def find_chromium() -> str | None:
    """``$CHROMIUM`` if set (and there), else the first Chromium on PATH."""
    given = os.environ.get("CHROMIUM")
    if given:
        return shutil.which(given)
    return next(filter(None, map(shutil.which, NAMES)), None)


def headless(chromium: str, *args: str, timeout: float = 90) -> str:
    """Run headless Chromium with a throw-away profile and no network beyond the page; its stdout."""
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        done = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", *args],
            check=True, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return done.stdout
