"""Small helpers shared by the studio and demo test suites."""

import socket
from pathlib import Path

from streamlit.testing.v1 import AppTest

#: The studio's entry script.
APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_app(page: str | None = None, timeout: float = 120) -> AppTest:
    """The studio run headless, switched to ``page`` when given, with no exception raised."""
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    """The value of the page's metric labelled ``label``."""
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r} among {[m.label for m in at.metric]}"
    return values[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
