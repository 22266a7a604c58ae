"""The studio in a real browser: `streamlit run app.py` served locally, driven by Playwright.

Every page is opened by its URL, its main control is used (train, move a slider...), and a
full-page screenshot is saved to ``$ECNF_SCREENSHOT_DIR`` (default ``tests/artifacts/
screenshots/``, ignored by git). Each page must show a figure and no error or exception.

The browser is the one ``scripts/browser.py`` finds (a system Chromium such as Debian's
``chromium``, or Playwright's downloaded one, which ``make test`` fetches when there is no
other), driven through Playwright's Python package (``pip install -r requirements.txt``).
Either one missing is a failure, not a skip: CI installs Debian's Chromium. The server points
at the tiny checkpoints of ``conftest.py`` so that a page renders in seconds on two CPU cores.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import free_port, healthy, stop_process
from helpers import settle as wait_until_settled
from PIL import Image

from studio.ui import PAGES

try:
    from playwright.sync_api import Browser, Page, sync_playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # reported by the chromium fixture as a failure
    sync_playwright = None

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("ECNF_SCREENSHOT_DIR") or ROOT / "tests/artifacts/screenshots")
STARTUP_S = 60  # the server answers its health check within seconds
TIMEOUT_MS = 120_000  # one script run: the first one imports torch, the machine may be busy
VIEWPORT = {"width": 1400, "height": 900}
FIGURES = (
    '[data-testid="stImage"] img, [data-testid="stPlotlyChart"] .main-svg, '
    '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'
)
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


@pytest.fixture(scope="module", autouse=True)
def chromium() -> str:
    """The browser ``scripts/browser.py`` finds: ``$ECNF_CHROMIUM``, a system Chromium, or
    Playwright's downloaded one. None of them fails the tests with what to install
    (``make test`` downloads Playwright's when there is no other; CI installs Debian's)."""
    if sync_playwright is None:
        pytest.fail(
            "Playwright is not installed: `pip install -r requirements.txt` (it pins playwright)",
            pytrace=False,
        )
    spec = importlib.util.spec_from_file_location("browser", ROOT / "scripts" / "browser.py")
    finder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finder)
    path = finder.find_chromium()
    if path is None:
        pytest.fail(finder.MISSING, pytrace=False)
    return str(path)


@pytest.fixture(scope="module")
def imported_dir(tmp_path_factory) -> Path:
    """A folder holding one imported TorchCFM model (a small configuration, random weights),
    written by the real import from a file in TorchCFM's released layout."""
    from test_importers import SMALL_CONFIG, save_released_layout, torchcfm_net

    from ecnf.importers import RELEASES, import_torchcfm

    folder = tmp_path_factory.mktemp("imported")
    pt = save_released_layout(folder / RELEASES["otcfm"].file, torchcfm_net())
    out = folder / "cifar10_otcfm_torchcfm.safetensors"
    import_torchcfm(pt, out, config=SMALL_CONFIG, release=RELEASES["otcfm"])
    pt.unlink()
    return folder


@pytest.fixture(scope="module")
def server(tiny_checkpoints, imported_dir, tmp_path_factory) -> Iterator[str]:
    """The studio's base URL; the server is stopped when the module's tests are done."""
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    # One torch thread: the tiny models gain nothing from two, and on a busy two-core
    # machine two threads wait on each other (a solve then takes 100 times longer).
    env = os.environ | {
        "ECNF_CHECKPOINTS_DIR": str(tiny_checkpoints),
        "ECNF_IMPORTED_DIR": str(imported_dir),
        "OMP_NUM_THREADS": "1",
    }
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while not healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the studio did not start:\n{log.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.2)
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab, hence a fresh Streamlit session."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def js_errors(page: Page) -> list[str]:
    """Uncaught JavaScript errors of the tab, collected as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def settle(page: Page, quiet_s: float = 0.5, timeout_s: float = TIMEOUT_MS / 1000) -> None:
    """Wait until the script has stayed finished for ``quiet_s`` (a rerun may start late)."""
    try:
        wait_until_settled(page, timeout_s, quiet_s)
    except TimeoutError as error:
        pytest.fail(str(error), pytrace=False)


def slide_to_start(page: Page, label: str) -> None:
    page.get_by_role("slider", name=label).press("Home")
    settle(page)


def type_number(page: Page, label: str, value: int) -> None:
    page.get_by_label(label, exact=True).fill(str(value))
    page.get_by_label(label, exact=True).press("Enter")
    settle(page)


def choose(page: Page, option: str) -> None:
    page.get_by_test_id("stRadio").get_by_text(option, exact=True).click()
    settle(page)


# ---- each page's main action -------------------------------------------------------------


def home_action(page: Page) -> None:
    choose(page, "flow matching")


def playground_action(page: Page) -> None:
    choose(page, "Train your own")
    slide_to_start(page, "Training iterations")  # 20 iterations
    page.get_by_role("button", name="Train", exact=True).click()


def images_action(page: Page) -> None:
    slide_to_start(page, "Time t")  # back to the noise, t = 0


def train_action(page: Page) -> None:
    for label in ("Width", "Depth (layers or residual blocks)", "Batch size"):
        slide_to_start(page, label)  # an MLP 32 x 1, batches of 32
    type_number(page, "Iterations", 20)
    type_number(page, "Preview every (iterations, 0 = never)", 10)
    page.get_by_role("button", name="Start", exact=True).click()


def solvers_action(page: Page) -> None:
    slide_to_start(page, "Samples")  # 250 points per solver and budget


def side_by_side_action(page: Page) -> None:
    slide_to_start(page, "Time t (both sides)")  # back to the shared noise


def likelihood_action(page: Page) -> None:
    slide_to_start(page, "Repeats (seeds)")  # 5 Hutchinson estimates instead of 30


def ablations_action(page: Page) -> None:
    type_number(page, "Noise seed for the sample grids", 1)


@dataclass(frozen=True)
class PageCheck:
    heading: str
    action: Callable[[Page], None]
    done: str  # text that appears only once the action has taken effect


#: keyed by the name of the page's file in studio.ui.PAGES
CHECKS = {
    "home": PageCheck("ECNF studio", home_action, "*_fm checkpoints"),
    "playground_2d": PageCheck("2D playground", playground_action, "Final loss"),
    "image_trajectories": PageCheck("Image trajectories", images_action, "at t = 0.00"),
    "train": PageCheck("Train", train_action, "completed at step 20/20"),
    "solver_lab": PageCheck("Solver lab", solvers_action, "exact W2 between 250 samples"),
    "side_by_side": PageCheck("Side by side", side_by_side_action, "recorded state at t = 0.00"),
    "likelihood_lab": PageCheck("Likelihood lab", likelihood_action, "5 independent draws"),
    "ablations": PageCheck("Seed paper ablations", ablations_action, "NFE 20, seed 1)"),
}


def name(file: str) -> str:
    return Path(file).stem


def assert_no_dialog(page: Page) -> None:
    dialogs = page.get_by_role("dialog")  # e.g. Streamlit's "Page not found"
    assert dialogs.count() == 0, "\n\n".join(dialogs.all_inner_texts())


def test_every_page_has_a_browser_check():
    assert list(CHECKS) == [name(file) for file, _, _, _ in PAGES]


def test_a_link_to_a_page_opens_it_on_a_fresh_server(server, page):
    """The module's first visit: a page's own URL works before the app has routed once."""
    url_path = next(url_path for file, url_path, _, _ in PAGES if name(file) == "train")
    page.goto(f"{server}/{url_path}")
    page.get_by_role("heading", name=CHECKS["train"].heading, exact=True).wait_for()
    settle(page)
    assert_no_dialog(page)


def screenshot(page: Page, stem: str) -> Path:
    """The whole page: the viewport grows to the height of the scrolling main area."""
    height = page.get_by_test_id("stMain").evaluate("main => main.scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(height, VIEWPORT["height"])})
    page.wait_for_timeout(500)  # let charts redraw at the new size
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{stem}.png"
    page.screenshot(path=path, full_page=True)
    return path


@pytest.mark.parametrize(
    ("number", "page_name", "url_path"),
    [(i, name(file), url_path) for i, (file, url_path, _, _) in enumerate(PAGES)],
    ids=[name(file) for file, _, _, _ in PAGES],
)
def test_page_in_a_browser(server, page, js_errors, number, page_name, url_path):
    check = CHECKS[page_name]
    stem = f"{number}_{page_name}"
    try:
        page.goto(f"{server}/{url_path}")
        page.get_by_role("heading", name=check.heading, exact=True).wait_for()
        settle(page)
        check.action(page)
        page.get_by_text(check.done).first.wait_for()
        settle(page)
    except BaseException:  # a timeout or pytest.fail: keep what the page showed
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{stem}_failed.png", full_page=True)
        raise

    errors = page.locator(ERRORS)
    assert errors.count() == 0, "\n\n".join(errors.all_inner_texts())
    assert_no_dialog(page)
    assert js_errors == [], js_errors
    try:  # a chart may still be drawing when the text that ends the action appears
        page.locator(FIGURES).first.wait_for(timeout=30_000)
    except PlaywrightTimeout:
        pytest.fail(f"{page_name} shows no image or chart")
    assert "Device:" in page.get_by_test_id("stSidebar").inner_text()

    path = screenshot(page, stem)
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    assert pixels.shape[0] >= VIEWPORT["height"] and pixels.shape[1] == VIEWPORT["width"]
    assert pixels.std() > 10, f"{path} looks blank (pixel std {pixels.std():.1f})"


def test_an_imported_model_samples_in_a_browser(server, page, js_errors):
    page.goto(f"{server}/images")
    settle(page)
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name="imported/cifar10_otcfm_torchcfm").click()
    settle(page)
    assert page.get_by_text("Imported from TorchCFM").count() == 1
    assert page.get_by_text("FID 3.5 reported by").count() == 1
    assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).all_inner_texts()
    assert page.locator('[data-testid="stImage"] img').count() >= 2  # states and endpoints
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "imported_model.png"), full_page=True)
    assert not js_errors, js_errors


def places_in_use(page: Page, server: str) -> int:
    """The Train page's own count of the server's training places in use."""
    page.goto(f"{server}/training")
    page.get_by_text("training places in").first.wait_for()
    text = page.get_by_text("training places in").first.inner_text()
    return int(text.split("This server:")[1].split(" of ")[0])


def test_a_closed_tabs_run_stops_and_frees_its_place(server, browser):
    """A visitor starts a long run and closes the tab: the server stops the run at once
    (its session ends), and another visitor sees the place free within 10 s."""
    watcher = browser.new_context(viewport=VIEWPORT)
    watcher.set_default_timeout(TIMEOUT_MS)
    visitor = browser.new_context(viewport=VIEWPORT)
    visitor.set_default_timeout(TIMEOUT_MS)
    try:
        other = watcher.new_page()
        assert places_in_use(other, server) == 0
        tab = visitor.new_page()
        tab.goto(f"{server}/training")
        tab.get_by_role("heading", name="Train", exact=True).wait_for()
        settle(tab)
        for label in ("Width", "Depth (layers or residual blocks)"):
            slide_to_start(tab, label)
        type_number(tab, "Iterations", 200_000)
        tab.get_by_role("button", name="Start", exact=True).click()
        tab.get_by_text("Throughput").first.wait_for()  # training, not only started
        assert places_in_use(other, server) == 1
        visitor.close()  # the tab goes: its websocket closes
        closed = time.monotonic()
        while places_in_use(other, server) != 0:
            assert time.monotonic() - closed < 10, "the closed tab's run still holds its place"
            other.wait_for_timeout(500)
    finally:
        watcher.close()


def test_a_drawing_on_the_canvas_is_trained_on_and_its_flow_shown(server, page, js_errors):
    """Draw a stroke with the mouse on the 2D playground's canvas, see its points, train a
    flow on them, and see the trajectories and the W2 against fresh points of the drawing."""
    page.goto(f"{server}/playground")
    page.get_by_role("heading", name="2D playground", exact=True).wait_for()
    settle(page)
    choose(page, "Train your own")
    page.get_by_test_id("stRadio").get_by_text("Draw it", exact=True).first.click()
    settle(page)
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.3 * box["height"])
    page.mouse.down()
    for i in range(1, 41):  # a wave across the canvas
        x = 0.2 + 0.6 * i / 40
        y = 0.5 + 0.25 * np.sin(2 * np.pi * i / 40)
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=2)
    page.mouse.up()
    page.get_by_text("points drawn from").first.wait_for()
    settle(page)
    slide_to_start(page, "Training iterations")  # 20 iterations
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Final loss").first.wait_for()
    settle(page)
    assert page.get_by_text("W2 to fresh your drawing").count() == 1
    page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=30_000)
    assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).all_inner_texts()
    screenshot(page, "drawn_playground")
    assert not js_errors, js_errors
