"""Find the Chromium that tests/test_browser.py drives, or fetch Playwright's own.

    python scripts/browser.py            # print the browser the tests will use, or fail
    python scripts/browser.py --ensure   # the same, downloading Playwright's Chromium if none

The tests use, in this order: ``$ECNF_CHROMIUM``; a system Chromium on the ``PATH``
(``chromium``, ``chromium-browser``; Debian: ``apt-get install chromium``); the Chromium that
``playwright install chromium`` downloads (about 150 MB, once, into Playwright's cache).
``make test`` runs this with ``--ensure``, so a fresh machine with internet needs nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SYSTEM_NAMES = ("chromium", "chromium-browser")


def playwright_chromium() -> Path | None:
    """Playwright's downloaded Chromium, if it is installed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as p:
        path = Path(p.chromium.executable_path)
    return path if path.is_file() else None


def find_chromium() -> Path | None:
    """The browser the tests will use, or None."""
    explicit = os.environ.get("ECNF_CHROMIUM")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    for name in SYSTEM_NAMES:
        found = shutil.which(name)
        # Ubuntu's chromium-browser may be a stub that asks for the snap: the real binary
        # must run `--version`
        if found and _runs(found):
            return Path(found)
    return playwright_chromium()


def _runs(path: str) -> bool:
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


MISSING = (
    "no Chromium for the browser test: install one (Debian/Ubuntu: sudo apt-get install "
    "chromium), run `.venv/bin/playwright install chromium` on a machine with internet, or "
    "point ECNF_CHROMIUM at a Chromium binary"
)


def main(argv: list[str]) -> int:
    path = find_chromium()
    if path is None and "--ensure" in argv:
        print("no system Chromium found: downloading Playwright's (once, about 150 MB)")
        done = subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"])
        path = find_chromium() if done.returncode == 0 else None
    if path is None:
        print(MISSING, file=sys.stderr)
        return 1
    print(f"browser for the tests: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
