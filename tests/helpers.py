"""Small helpers shared by the studio and demo test suites."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from streamlit.testing.v1 import AppTest

from benchmarks.studio_start import free_port, healthy, settle, stop_process  # shared

__all__ = [
    "APP",
    "demo_client",
    "free_port",
    "healthy",
    "metric",
    "open_app",
    "settle",
    "stop_process",
]

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


@contextlib.contextmanager
def demo_client(downloads: Path) -> Iterator:
    """The Gradio demo served on a free local port, and a ``gradio_client.Client`` of it."""
    import os

    from gradio_client import Client

    import gradio_app

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = gradio_app.build_demo()
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        share=False,
        quiet=True,
        ssr_mode=False,
    )
    try:
        yield Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads))
    finally:
        demo.close()
