"""The teaching notebooks: each runs top to bottom in fast mode, and the files stay clean.

Every notebook is executed with ``ECNF_FAST=1`` in a fresh Jupyter kernel (nbclient), and
any error in any cell fails its test. The committed files carry no outputs (so that diffs
show only what a person wrote) and no private copies of library code.
"""

import ast
import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
COURSE = [
    "01_flow_matching_2d",
    "02_solvers_and_nfe",
    "03_straight_flows",
    "04_images",
    "05_likelihood",
    "06_seed_paper",
]
# Names whose definition in a notebook would mean it re-implements a library step.
LIBRARY_WORDS = (
    "euler", "midpoint", "heun", "rk4", "integrate", "solve", "loss", "divergence",
    "log_prob", "likelihood", "coupl", "ema", "frechet", "wasserstein",
)  # fmt: skip


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(path: Path) -> list[str]:
    return [cell.source for cell in read(path).cells if cell.cell_type == "code"]


def library_names() -> set[str]:
    """Every function and class name defined anywhere in ecnf, without leading underscores."""
    names = set()
    for module in (ROOT / "ecnf").rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name.lstrip("_").lower())
    return names - {"init", "forward", "call", "repr"}


def callback_hooks() -> set[str]:
    """Methods a notebook may override to watch training (``ecnf.Callback``'s hooks)."""
    from ecnf import Callback

    return {name for name in vars(Callback) if not name.startswith("_")}


def fashion_mnist_expected() -> bool:
    from ecnf.data.fashion_mnist import fashion_mnist_source_dir

    required = os.environ.get("ECNF_REQUIRE_FASHION_MNIST") == "1"
    return required or fashion_mnist_source_dir().is_dir()


def test_the_course_has_its_notebooks():
    assert [path.stem for path in NOTEBOOKS] == COURSE


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = read(path)
    for index, cell in enumerate(notebook.cells):
        where = f"{path.name}, cell {index}"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{where} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{where} has an execution count"
        assert "execution" not in cell.metadata, f"{where} has execution timings"
    assert "widgets" not in notebook.metadata, f"{path.name} stores widget state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_teaches_with_the_library_and_has_a_fast_mode(path):
    cells = read(path).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), (
        f"{path.name} should open with a markdown title"
    )
    source = "\n".join(code_cells(path))
    assert 'os.environ.get("ECNF_FAST"' in source, f"{path.name} must read ECNF_FAST"
    assert "import ecnf" in source or "from ecnf" in source, f"{path.name} must use ecnf"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_carries_no_copy_of_library_code(path):
    known, hooks = library_names(), callback_hooks()
    for source in code_cells(path):
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            name = node.name.lower()
            if name in hooks:  # a Callback subclass watching fit
                continue
            assert name not in known, f"{path.name} defines {node.name}, which ecnf provides"
            words = [word for word in LIBRARY_WORDS if word in name]
            assert not words, f"{path.name} defines {node.name}: use ecnf's version instead"


def test_library_names_are_found():
    names = library_names()
    assert {"integrate", "flow_matching_loss", "log_prob", "velocitymlp"} <= names


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory) -> str:
    """A kernel spec for the interpreter running the tests, whatever other specs exist."""
    name = "ecnf-test-python"
    folder = tmp_path_factory.mktemp("jupyter") / "kernels" / name
    folder.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (ecnf tests)",
        "language": "python",
    }
    (folder / "kernel.json").write_text(json.dumps(spec))
    saved = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(folder.parents[1]), saved]))
    yield name
    if saved is None:
        del os.environ["JUPYTER_PATH"]
    else:
        os.environ["JUPYTER_PATH"] = saved


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_in_fast_mode(path, kernel_name):
    notebook = read(path)
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "ECNF_FAST": "1", "PYTHONPATH": pythonpath}
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.1f} s in fast mode")

    text = "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "fast mode: True" in text, f"{path.name} did not run in fast mode"
    if path.stem == "04_images":
        expected = "fashion_mnist" if fashion_mnist_expected() else "digits"
        assert f"data set: {expected}" in text, f"{path.name} should have used {expected}"
