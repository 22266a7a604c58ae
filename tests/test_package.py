"""Package hygiene: public names exist, the core never imports a UI toolkit, and every
package the code imports is pinned."""

import ast
import fnmatch
import importlib
import pkgutil
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

import ecnf

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = (REPO / "pyproject.toml").read_text()
#: Top-level names that are this repository's own code, not installed packages.
OWN = {"ecnf", "studio", "app_pages", "benchmarks", "scripts", "tests", "helpers", "conftest"}
OWN |= {"app", "gradio_app", "ecnf_display"}
OWN |= {p.stem for p in (Path(__file__).parent).glob("*.py")}  # test modules import each other
#: What the core library must never import: UI toolkits, plotting, and the front ends.
PRESENTATION = {
    "streamlit",
    "gradio",
    "matplotlib",
    "plotly",
    "ecnf_display",
    "studio",
    "app_pages",
}


def test_import_ecnf_imports_no_ui():
    code = (
        "import sys, ecnf, ecnf.nets, ecnf.likelihood; "
        "bad = [m for m in ('streamlit', 'gradio', 'matplotlib', 'plotly') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_ecnf_is_lazy_and_every_public_name_resolves():
    """``import ecnf`` costs no torch; each name is found in the module _EXPORTS names, and
    is the very object that module defines."""
    code = (
        "import sys, ecnf, ecnf.shipped; print('torch' in sys.modules); "
        "names = [n for n in ecnf.__all__ if n != '__version__']; "
        "assert sorted(names) == sorted(ecnf._ORIGIN), set(names) ^ set(ecnf._ORIGIN); "
        "import importlib; "
        "assert all(getattr(ecnf, n) is getattr(importlib.import_module('ecnf.' + ecnf._ORIGIN[n]),"
        " n) for n in names); "
        "assert ecnf.solvers.integrate is ecnf.integrate and 'fit' in dir(ecnf); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        ecnf.no_such_name


def test_the_core_never_imports_presentation_code():
    """Not at import time, not inside a function: ``ecnf`` holds the ideas, and the figures,
    pictures and page computations live in ``ecnf_display``, which imports ``ecnf``."""
    for path in sorted((REPO / "ecnf").rglob("*.py")):
        bad = _imports(ast.parse(path.read_text()), optional=False) & PRESENTATION
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_display_package_declares_what_it_needs():
    import ecnf_display

    files = sorted(Path(ecnf_display.__file__).parent.glob("*.py"))
    needs = set().union(*(_imports(ast.parse(f.read_text())) for f in files))
    third_party = needs - OWN - set(sys.stdlib_module_names) - {"__future__"}
    core = re.search(r"^dependencies = \[(.*?)^\]", PYPROJECT, re.MULTILINE | re.DOTALL).group(1)
    display = re.search(r"^display = \[(.*?)\]", PYPROJECT, re.MULTILINE | re.DOTALL).group(1)
    declared = {
        re.match(r"[A-Za-z0-9_.-]+", d.strip().strip('"')).group(0).lower()
        for d in (core + "," + display).split(",")
        if d.strip()
    }
    distributions = packages_distributions()
    for module in sorted(third_party):
        names = {d.lower() for d in distributions.get(module, [module])}
        assert names & declared, f"ecnf_display imports {module}, not declared in pyproject"
    # and setuptools packages it beside ecnf
    include = re.search(r"^include = \[(.*?)\]", PYPROJECT, re.MULTILINE).group(1)
    patterns = [p.strip().strip('"') for p in include.split(",")]
    assert any(fnmatch.fnmatch("ecnf_display", p) for p in patterns), include


def test_every_public_name_exists():
    import ecnf_display

    modules = [ecnf, ecnf_display] + [
        importlib.import_module(m.name)
        for package, prefix in ((ecnf, "ecnf."), (ecnf_display, "ecnf_display."))
        for m in pkgutil.walk_packages(package.__path__, prefix=prefix)
    ]
    for module in modules:
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name}"


def _imports(tree: ast.AST, optional: bool = False) -> set[str]:
    """Top-level modules imported in ``tree``, leaving out those under ``try: ...
    except ImportError`` (optional ones: the code runs without them)."""
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            for child in node.body:
                _imports(child, optional=True)  # walked for nesting, names dropped
            for part in (*node.handlers, *node.orelse, *node.finalbody):
                found |= _imports(part, optional)
            continue
        if isinstance(node, ast.Import) and not optional:
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not optional:
            found.add(node.module.split(".")[0])
        found |= _imports(node, optional)
    return found


def test_requirements_pin_every_package_the_code_imports():
    folders = ("ecnf", "studio", "app_pages", "benchmarks", "scripts", "tests")
    files = [p for d in folders for p in (REPO / d).rglob("*.py")]
    files += [REPO / "app.py", REPO / "gradio_app.py"]
    modules = set().union(*(_imports(ast.parse(f.read_text())) for f in files))
    third_party = sorted(modules - set(sys.stdlib_module_names) - OWN)
    assert {"torch", "numba", "streamlit", "gradio", "nbformat"} <= set(third_party)

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    lines = (REPO / "requirements.txt").read_text().splitlines()
    pinned = {norm(line.split("==")[0]) for line in lines if "==" in line and line[0] != "#"}
    providers = packages_distributions()
    missing = [m for m in third_party if not any(norm(d) in pinned for d in providers.get(m, []))]
    assert not missing, f"imported but not pinned in requirements.txt: {missing}"
