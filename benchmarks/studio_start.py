"""How long a visitor waits for the studio's home page, in a real browser.

The studio is started as ``make app`` starts it (``streamlit run app.py`` from the repository
root, so ``.streamlit/config.toml`` applies), on a free local port, and Debian's Chromium
opens the home page through Playwright. Three moments are timed from the moment the tab asks
for the page: the page's title shows, its first picture is drawn, and the script has
finished (Streamlit reports it idle for half a second with every picture drawn). A cold visit is the
first one on a fresh server (imports, checkpoint loads and every cached computation
included); a warm visit is a new tab, hence a new session, on the same server afterwards.

For comparison the same is measured with Streamlit's file watcher on (``auto``, its default
without the project's config): it walks every folder under the app, ``.venv`` included.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["chromium_path", "free_port", "healthy", "measure", "settle", "stop_process"]

ROOT = Path(__file__).resolve().parents[1]
TITLE = "ECNF studio"
HOME_PICTURES = 3  # the picture, the gallery and at least one image model's samples
#: every picture on the page has arrived and been decoded
_PICTURES_DRAWN = """n => {
  const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
  return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


def chromium_path() -> str:
    """The browser to drive: ``$ECNF_CHROMIUM``, else the system's Chromium."""
    return os.environ.get("ECNF_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def stop_process(process: subprocess.Popen, timeout_s: float = 15) -> None:
    """Ask a server to stop; kill it when it has not within ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    """Whether the Streamlit server at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read() == b"ok"
    except OSError:
        return False


def settle(
    page, timeout_s: float = 300, quiet_s: float = 0.5, poll_ms: int = 100, also=lambda: True
) -> float:
    """Wait until a Streamlit page's script has stayed finished (and connected, and ``also()``
    true) for ``quiet_s``, since a rerun may start late; returns the ``time.monotonic()`` at
    which that quiet began. :class:`TimeoutError` after ``timeout_s``."""
    app = page.get_by_test_id("stApp")
    deadline, quiet_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        idle = (
            app.get_attribute("data-test-script-state") == "notRunning"
            and app.get_attribute("data-test-connection-state") == "CONNECTED"
            and also()
        )
        now = time.monotonic()
        if not idle:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            return quiet_since
        page.wait_for_timeout(poll_ms)
    raise TimeoutError(f"{page.url} was still running after {timeout_s:.0f} s")


def _visit(browser, url: str, timeout_s: float = 300) -> dict:
    """Seconds from asking for the page to its title, first picture and finished script."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(timeout_s * 1000)
    start = time.monotonic()
    page.goto(url)
    page.get_by_role("heading", name=TITLE, exact=True).wait_for()
    title = time.monotonic() - start
    page.wait_for_function(_PICTURES_DRAWN, arg=1)
    first_picture = time.monotonic() - start
    try:
        done = settle(
            page, timeout_s, poll_ms=50,
            also=lambda: page.evaluate(f"({_PICTURES_DRAWN})({HOME_PICTURES})"),
        ) - start  # fmt: skip
    finally:
        context.close()
    return {"title": title, "first_picture": first_picture, "finished": done}


def _server_visits(browser, watcher: str | None, visits: int) -> dict:
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(port)]  # fmt: skip
    if watcher is not None:
        command += ["--server.fileWatcherType", watcher]
    env = {k: v for k, v in os.environ.items() if k != "ECNF_CHECKPOINTS_DIR"}  # shipped models
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while not healthy(url):
            if process.poll() is not None or time.perf_counter() - start > 120:
                raise RuntimeError(f"the studio did not start: {' '.join(command)}")
            time.sleep(0.1)
        up = time.perf_counter() - start
        runs = [_visit(browser, url) for _ in range(visits)]
    finally:
        stop_process(process)
    return {"server_up": up, "cold": runs[0], "warm": runs[1:]}


def measure(quick: bool = False) -> dict:
    """Cold and warm home-page visits, with the project's config and with the watcher on."""
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    servers = 1 if quick else 3
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        try:
            for label, watcher in (("project config", None), ("file watcher auto", "auto")):
                runs = [_server_visits(browser, watcher, 2) for _ in range(servers)]
                out[label] = {
                    "servers": servers,
                    "server_up": statistics.median(r["server_up"] for r in runs),
                    **{
                        f"{visit} {moment}": statistics.median(
                            (r["cold"] if visit == "cold" else r["warm"][0])[moment] for r in runs
                        )
                        for visit in ("cold", "warm")
                        for moment in ("title", "first_picture", "finished")
                    },
                }
                if quick:
                    break
        finally:
            browser.close()
    return out
