"""Package hygiene: public names exist, and the core never imports a UI toolkit."""

import importlib
import pkgutil
import subprocess
import sys

import ecnf


def test_import_ecnf_imports_no_ui():
    code = (
        "import sys, ecnf, ecnf.nets, ecnf.likelihood; "
        "bad = [m for m in ('streamlit', 'gradio', 'matplotlib', 'plotly') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_public_name_exists():
    modules = [ecnf] + [
        importlib.import_module(m.name)
        for m in pkgutil.walk_packages(ecnf.__path__, prefix="ecnf.")
    ]
    for module in modules:
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name}"
