"""Small helpers shared by the studio and demo test suites."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from benchmarks.studio_start import free_port, healthy  # one copy, shared with the benchmark

__all__ = ["APP", "free_port", "healthy", "metric", "open_app"]

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
