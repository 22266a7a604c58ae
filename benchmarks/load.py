"""Section 7: the studio and the demo with several visitors at once, on this machine.

* **Studio training.** The Train page's default 2D run (moons, MLP 256 x 3, flow matching,
  batch 256), its iterations raised so that it lasts the whole window, in headless
  Chromium on a fresh ``streamlit run app.py``. Samples per second come from the page's
  own Step metric, read at both ends of a window: first one visitor alone, then
  ``visitors`` who press Start together (the server admits ``ECNF_STUDIO_MAX_RUNS`` of them
  and queues the others, whose message is reported). The same configuration through
  ``python -m ecnf train`` gives the CLI's figure, from its last log record.
* **Studio sampling.** While those runs train, ``samplers`` more visitors open the 2D
  playground (which samples a shipped model on opening): seconds until each page has
  finished, and any error it shows.
* **Gradio demo.** ``callers`` concurrent ``gradio_client`` callers, half sampling a 2D
  model and half sampling images: answered, refused (with Gradio's message) and failed
  calls, latency p50 and p95 of the answered ones.

Peak memory is each server process's high-water mark (``VmHWM`` in ``/proc``).

    python -m benchmarks.load [--quick]
    python -m benchmarks.run_all --sections load --update   # into RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from ecnf._run import LOG_NAME
from studio.scheduler import config_from_env

from .studio_start import chromium_path, free_port, healthy, settle, stop_process

__all__ = ["markdown", "run"]

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256  # the Train page's default batch on a CPU


def peak_rss_mb(pid: int) -> float:
    """The process's resident-memory high-water mark, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


@contextmanager
def _served(command: list[str], ready, env: dict):
    """Start a server; yield its process once ``ready()``; stop it afterwards."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 300
            while not ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{command} did not start:\n{log.read()[-2000:]}")
                time.sleep(0.5)
            yield process
        finally:
            stop_process(process)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _studio(port: int):
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(port)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "ECNF_CHECKPOINTS_DIR"}
    return _served(command, lambda: healthy(f"http://127.0.0.1:{port}"), env)


# ---- studio: training visitors --------------------------------------------------------------


def _start_training(page, url: str, iterations: int) -> None:
    page.goto(f"{url}/training")
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    settle(page)
    field = page.get_by_label("Iterations", exact=True)
    field.fill(str(iterations))
    field.press("Enter")
    settle(page)


def _step(page) -> int | None:
    """The Step metric the page shows (``None`` while queued or starting)."""
    metric = page.get_by_test_id("stMetric").filter(has_text="Step")
    if metric.count() == 0:
        return None
    match = re.search(r"(\d+)/\d+", metric.first.inner_text())
    return int(match.group(1)) if match else None


def _window(pages: list, seconds: float) -> list[float | None]:
    """Samples per second of each page's run over ``seconds`` (``None``: it did not train)."""
    first = [(_step(p), time.monotonic()) for p in pages]
    time.sleep(seconds)
    rates = []
    for page, (s0, t0) in zip(pages, first, strict=True):
        s1, t1 = _step(page), time.monotonic()
        rates.append(None if s0 is None or s1 is None else (s1 - s0) * BATCH / (t1 - t0))
    return rates


def _wait_training(pages: list, count: int, timeout_s: float = 120) -> None:
    """Until ``count`` of the pages show a Step (their runs train)."""
    deadline = time.monotonic() + timeout_s
    while sum(_step(p) is not None for p in pages) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} runs were training after {timeout_s:.0f} s")
        time.sleep(0.5)


def _queue_message(page) -> str | None:
    for alert in page.get_by_test_id("stAlert").all():
        text = alert.inner_text()
        if "queued" in text or "busy" in text:
            return _without_icon(" ".join(text.split()))
    return None


def _without_icon(text: str) -> str:
    """The alert's words without the name of its Material icon, which ``inner_text`` reads
    out first (``hourglass_top session/... is queued``)."""
    return re.sub(r"^[a-z]+(_[a-z]+)+ ", "", text)


def studio_load(browser, visitors: int, samplers: int, window_s: float) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    places = config_from_env().max_active
    out: dict = {"visitors": visitors, "samplers": samplers, "window_s": window_s,
                 "places": places}  # fmt: skip
    with _studio(port) as server:
        contexts = [browser.new_context(viewport={"width": 1400, "height": 900})
                    for _ in range(visitors + samplers)]  # fmt: skip
        try:
            pages = [c.new_page() for c in contexts]
            for p in pages:
                p.set_default_timeout(300_000)
            trainers, lookers = pages[:visitors], pages[visitors:]
            # one visitor alone
            _start_training(trainers[0], url, 200_000)
            trainers[0].get_by_role("button", name="Start", exact=True).click()
            _wait_training(trainers[:1], 1)
            time.sleep(2)  # past the first steps' warm-up
            out["alone"] = _window(trainers[:1], window_s)[0]
            main = trainers[0].get_by_test_id("stMainBlockContainer")
            main.get_by_role("button", name="Stop", exact=True).click()
            settle(trainers[0])
            # all of them, pressing Start together (the first one starts a fresh run)
            for p in trainers:
                _start_training(p, url, 200_000)
            for p in trainers:  # one click each, within a second or two
                p.get_by_role("button", name="Start", exact=True).click()
            _wait_training(trainers, min(visitors, places))
            time.sleep(2)
            # the others browse the playground meanwhile
            opened = []
            for p in lookers:
                start = time.monotonic()
                p.goto(f"{url}/playground")
                p.get_by_role("heading", name="2D playground", exact=True).wait_for()
                settle(p)
                errors = p.get_by_test_id("stException").count() + p.locator(
                    '[data-testid="stAlert"]:has-text("could not")').count()  # fmt: skip
                opened.append({"seconds": time.monotonic() - start, "errors": errors})
            rates = _window(trainers, window_s)
            out["together"] = rates
            out["queued_messages"] = [m for m in (_queue_message(p) for p in trainers) if m]
            out["samplers_opened"] = opened
            out["peak_rss_mb"] = peak_rss_mb(server.pid)
        finally:
            for c in contexts:
                c.close()
    return out


def cli_throughput(iterations: int, threads: int | None = None) -> float:
    """Samples per second of ``python -m ecnf train`` on the page's default configuration,
    with torch's default threads or ``threads`` of them."""
    env = dict(os.environ)
    if threads is None:
        env.pop("OMP_NUM_THREADS", None)
    else:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "ecnf", "train", "--data", "moons", "--loss", "fm",
            "--iterations", str(iterations), "--batch-size", str(BATCH), "--lr", "2e-3",
            "--lr-schedule", "cosine", "--log-every", "25", "--quiet", "--out", tmp,
        ]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env=env)
        lines = (Path(tmp) / LOG_NAME).read_text().splitlines()
        records = [json.loads(line) for line in lines]
    return statistics.median(r["samples_per_s"] for r in records[len(records) // 2 :])


# ---- the Gradio demo ------------------------------------------------------------------------


def gradio_load(callers: int) -> dict:
    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "ECNF_CHECKPOINTS_DIR"}
    env |= {"GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    results: list[dict] = []
    with _served([sys.executable, "gradio_app.py"], lambda: _answers(url), env) as process:
        with tempfile.TemporaryDirectory() as downloads:

            def call(i: int) -> None:
                start = time.monotonic()
                try:
                    c = Client(url, verbose=False, analytics_enabled=False,
                               download_files=downloads)  # fmt: skip
                    if i % 2:
                        c.predict("digits_unet_fm", "rk4", 10, 16, i, api_name="/sample_images")
                    else:
                        c.predict("moons_otcfm", "rk4", 10, 1000, i, api_name="/sample_2d")
                    results.append({"outcome": "answered", "seconds": time.monotonic() - start})
                except Exception as error:  # each outcome is counted, none stops the others
                    text = " ".join(str(error).split())[:200]
                    outcome = "refused" if "queue is full" in text.lower() else "failed"
                    results.append({"outcome": outcome, "message": text,
                                    "seconds": time.monotonic() - start})  # fmt: skip

            threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=600)
        peak = peak_rss_mb(process.pid)
    answered = sorted(r["seconds"] for r in results if r["outcome"] == "answered")
    messages = sorted({r["message"] for r in results if r["outcome"] != "answered"})
    return {
        "callers": callers,
        **{k: sum(r["outcome"] == k for r in results) for k in ("answered", "refused", "failed")},
        "p50_s": statistics.median(answered) if answered else None,
        "p95_s": answered[max(0, round(0.95 * len(answered)) - 1)] if answered else None,
        "messages": messages,
        "peak_rss_mb": peak,
    }


# ---- the section ----------------------------------------------------------------------------


def run(quick: bool = False) -> dict:
    from playwright.sync_api import sync_playwright

    visitors, samplers, window = (3, 1, 5.0) if quick else (3, 2, 15.0)
    callers = 6 if quick else 24
    iterations = 300 if quick else 1500
    config = config_from_env()
    share = max(1, config.cores - config.reserve)  # a lone studio run's torch threads
    result = {
        "cli_samples_per_s": cli_throughput(iterations),
        "cli_share_threads": share,
        "cli_share_samples_per_s": cli_throughput(iterations, share),
    }
    shared = result["cli_share_samples_per_s"]
    cli = result["cli_samples_per_s"]
    print(f"  CLI: {cli:.0f} samples/s, {shared:.0f} with {share} thread(s)", flush=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path())
        try:
            result["studio"] = studio_load(browser, visitors, samplers, window)
        finally:
            browser.close()
    print(f"  studio: {result['studio']}", flush=True)
    result["gradio"] = gradio_load(callers)
    print(f"  gradio: {result['gradio']}", flush=True)
    return result


def markdown(result: dict) -> str:
    s, g, cli = result["studio"], result["gradio"], result["cli_samples_per_s"]
    alone = s["alone"]
    together = [r for r in s["together"] if r is not None]
    total = sum(together)
    lines = [
        "## 7. Several visitors at once (this machine's CPU)",
        "",
        f"The Train page's default 2D run (moons, MLP 256 x 3, flow matching, batch {BATCH}) in "
        "headless Chromium on a fresh studio; samples per second from the page's Step metric "
        f"over {s['window_s']:.0f} s windows; the CLI runs the same configuration "
        "(`benchmarks/load.py`). The browsers run on the same machine as the server, so their "
        "drawing of each page takes CPU from the runs, as it would not for remote visitors.",
        "",
        "| what | samples/s | ratio |",
        "|---|---|---|",
        f"| `python -m ecnf train` (torch's default threads) | {cli:.0f} | |",
        *(
            [
                f"| `python -m ecnf train` with {result['cli_share_threads']} thread(s), a lone "
                f"studio run's share | {result['cli_share_samples_per_s']:.0f} | |"
            ]
            if "cli_share_samples_per_s" in result
            else []
        ),
        f"| one visitor alone | {alone:.0f} | {alone / cli:.2f} of the CLI"
        + (
            f", {alone / result['cli_share_samples_per_s']:.2f} of the CLI with the same threads"
            if "cli_share_samples_per_s" in result
            else ""
        )
        + " |",
        f"| {s['visitors']} visitors pressing Start together, "
        f"{s.get('places', '?')} training place(s): {len(together)} training "
        f"({', '.join(f'{r:.0f}' for r in together)}) | {total:.0f} | {total / alone:.2f} of one "
        "visitor alone |",
        "",
        "Queued visitors were told: "
        + ("; ".join(m.rstrip(".") for m in s["queued_messages"]) or "none queued")
        + ".",
        "",
        f"Meanwhile {s['samplers']} more visitors opened the 2D playground (seconds until each "
        "page had finished): "
        + ", ".join(f"{o['seconds']:.1f} s ({o['errors']} errors)" for o in s["samplers_opened"])
        + f". Peak memory of the studio's process: {s['peak_rss_mb']:.0f} MiB.",
        "",
        f"The Gradio demo, {g['callers']} concurrent `gradio_client` callers (half sampling "
        "`moons_otcfm` with RK4 10 steps and 1000 points, half 16 images of `digits_unet_fm`):",
        "",
        "| answered | refused | failed | p50 (s) | p95 (s) | peak memory (MiB) |",
        "|---|---|---|---|---|---|",
        f"| {g['answered']} | {g['refused']} | {g['failed']} | "
        f"{g['p50_s'] or float('nan'):.1f} | {g['p95_s'] or float('nan'):.1f} | "
        f"{g['peak_rss_mb']:.0f} |",
        "",
        "Messages of the refused and failed calls: "
        + ("; ".join(m.rstrip(".!") for m in g["messages"]) or "none")
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
