"""The course notebooks with their solutions filled in, and their executed copies.

    python scripts/notebooks.py solve [NAME ...] [--out DIR]    # solved notebooks (no outputs)
    python scripts/notebooks.py execute [NAME ...] [--fast]     # notebooks/executed/, with outputs
    python scripts/notebooks.py check                           # executed copies are up to date

An exercise is a code cell whose first line is ``# Exercise N.M: ...``. Its solution is the
first ``python`` code block under the heading ``## Exercise N.M`` in
``notebooks/solutions/<notebook>.md``; solving a notebook replaces each exercise cell's source
by that block. ``execute`` runs the solved notebooks in a fresh kernel of this interpreter
(full mode unless ``--fast``) and writes them, outputs included, to ``notebooks/executed/``,
so that a teacher can read every figure and number without running anything. ``make
notebooks`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
SOLUTIONS_DIR = NOTEBOOK_DIR / "solutions"
EXECUTED_DIR = NOTEBOOK_DIR / "executed"
EXERCISE = re.compile(r"^# Exercise (\d+\.\d+)\b")
HEADING = re.compile(r"^## Exercise (\d+\.\d+)\b.*$", re.MULTILINE)
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
INTERACTIVE_NOTE = "(an interactive plotly figure: run the notebook to see it)"
#: The largest executed copy we keep (bytes): figures are PNGs, animations are few frames.
MAX_EXECUTED_BYTES = 2_500_000


def notebooks(names: list[str] | None = None) -> list[Path]:
    paths = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if names:
        paths = [p for p in paths if any(p.stem.startswith(n) for n in names)]
        if not paths:
            raise SystemExit(f"no notebook matches {names}")
    return paths


def exercise_cells(notebook: nbformat.NotebookNode) -> dict[str, int]:
    """Exercise number -> index of its code cell."""
    found = {}
    for index, cell in enumerate(notebook.cells):
        match = EXERCISE.match(cell.source) if cell.cell_type == "code" else None
        if match:
            if match.group(1) in found:
                raise ValueError(f"exercise {match.group(1)} appears twice")
            found[match.group(1)] = index
    return found


def solutions_file(path: Path) -> Path:
    return SOLUTIONS_DIR / f"{path.stem}.md"


def read_solutions(path: Path) -> dict[str, str]:
    """Exercise number -> the source of its solution cell, from the notebook's solutions file."""
    text = solutions_file(path).read_text()
    headings = list(HEADING.finditer(text))
    out = {}
    for k, heading in enumerate(headings):
        end = headings[k + 1].start() if k + 1 < len(headings) else len(text)
        block = CODE_BLOCK.search(text, heading.end(), end)
        if block is None:
            name = solutions_file(path).name
            raise ValueError(f"{name}: exercise {heading.group(1)} has no code block")
        out[heading.group(1)] = block.group(1).rstrip("\n")
    return out


def solved(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path`` with every exercise cell replaced by its solution."""
    notebook = nbformat.read(path, as_version=4)
    cells, solutions = exercise_cells(notebook), read_solutions(path)
    if set(cells) != set(solutions):
        raise ValueError(
            f"{path.name}: exercises {sorted(cells)} but solutions {sorted(solutions)}"
        )
    for number, index in cells.items():
        source = solutions[number]
        if not EXERCISE.match(source):
            raise ValueError(f"solution {number} must keep the '# Exercise {number}' first line")
        notebook.cells[index].source = source
    return notebook


def kernel(folder: Path) -> str:
    """A kernel spec, under ``folder``, that runs this interpreter; returns its name."""
    name = "ecnf-python"
    spec = folder / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python (ecnf)", "language": "python"})
    )
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        filter(None, [str(folder), os.environ.get("JUPYTER_PATH")])
    )
    return name


def execute(
    notebook: nbformat.NotebookNode, *, fast: bool, kernel_name: str, timeout: int = 3600
) -> float:
    """Run ``notebook`` in place (outputs filled in); returns the seconds it took."""
    from nbclient import NotebookClient

    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "ECNF_FAST": "1" if fast else "0", "PYTHONPATH": pythonpath}
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    client.execute(env=env)
    return time.perf_counter() - start


def clean_outputs(notebook: nbformat.NotebookNode) -> None:
    """Drop what would make a copy large or unreadable outside Jupyter: widget state and
    interactive plotly payloads, which keep their static picture or text instead."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "application/vnd.plotly.v1+json" in data:
                data.pop("application/vnd.plotly.v1+json")
                data.pop("text/html", None)
                data["text/plain"] = INTERACTIVE_NOTE


def write_executed(path: Path, *, fast: bool, kernel_name: str) -> Path:
    notebook = solved(path)
    seconds = execute(notebook, fast=fast, kernel_name=kernel_name)
    clean_outputs(notebook)
    mode = "fast mode (ECNF_FAST=1)" if fast else "full mode"
    notebook.metadata["ecnf"] = {
        "executed": f"{mode}, solutions filled in, {seconds:.0f} s",
        "command": f"python scripts/notebooks.py execute {path.stem}" + (" --fast" if fast else ""),
    }
    EXECUTED_DIR.mkdir(exist_ok=True)
    out = EXECUTED_DIR / path.name
    nbformat.write(notebook, out)
    size = out.stat().st_size
    print(f"{out.relative_to(ROOT)}: {mode}, {seconds:.0f} s, {size / 1e6:.2f} MB")
    if size > MAX_EXECUTED_BYTES:
        print(f"warning: {out.name} is larger than {MAX_EXECUTED_BYTES / 1e6:.1f} MB")
    return out


def code_sources(notebook: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def stale_copies() -> list[str]:
    """Names of notebooks whose executed copy is missing or differs from the solved source."""
    stale = []
    for path in notebooks():
        copy = EXECUTED_DIR / path.name
        if not copy.exists():
            stale.append(f"{path.name} (no executed copy)")
            continue
        ours, theirs = solved(path), nbformat.read(copy, as_version=4)
        same_text = [c.source for c in ours.cells] == [c.source for c in theirs.cells]
        if not same_text:
            stale.append(f"{path.name} (changed since its copy was executed)")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    solve = sub.add_parser("solve", help="write the notebooks with their solutions filled in")
    solve.add_argument("names", nargs="*", help="notebooks by name prefix (default: all)")
    solve.add_argument("--out", type=Path, default=NOTEBOOK_DIR / "solved")
    run = sub.add_parser("execute", help="write executed copies to notebooks/executed/")
    run.add_argument("names", nargs="*", help="notebooks by name prefix (default: all)")
    run.add_argument("--fast", action="store_true", help="small budgets (ECNF_FAST=1)")
    sub.add_parser("check", help="fail if an executed copy is missing or out of date")
    args = parser.parse_args(argv)

    if args.command == "solve":
        args.out.mkdir(parents=True, exist_ok=True)
        for path in notebooks(args.names):
            nbformat.write(solved(path), args.out / path.name)
            print(args.out / path.name)
        return 0
    if args.command == "execute":
        with tempfile.TemporaryDirectory(prefix="ecnf_kernel_") as folder:
            name = kernel(Path(folder))
            for path in notebooks(args.names):
                write_executed(path, fast=args.fast, kernel_name=name)
        return 0
    stale = stale_copies()
    for line in stale:
        print(f"stale: {line}; run python scripts/notebooks.py execute")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
