"""The repository deploys as a Hugging Face Space as it is: front matter, pins, files."""

import re
from pathlib import Path

import gradio

REPO = Path(__file__).resolve().parents[1]


def front_matter(path: Path) -> dict[str, str]:
    """The ``key: value`` lines between the two ``---`` lines that open a Space README."""
    text = path.read_text()
    assert text.startswith("---\n"), f"{path} must open with YAML front matter"
    block = text[4 : text.index("\n---\n", 4)]
    return {
        k.strip(): v.strip().strip('"')
        for k, v in (line.split(":", 1) for line in block.splitlines())
    }


def pins() -> dict[str, str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


def test_readme_front_matter_configures_a_gradio_space():
    meta = front_matter(REPO / "README.md")
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == pins()["gradio"] == gradio.__version__
    python = tuple(int(part) for part in meta["python_version"].split("."))
    minimum = re.search(r'requires-python = ">=([0-9.]+)"', (REPO / "pyproject.toml").read_text())
    assert python >= tuple(int(part) for part in minimum.group(1).split("."))
    assert (REPO / meta["app_file"]).read_text().count("def build_demo(") == 1
    assert meta["license"] == "mit"
    for key in ("title", "emoji", "colorFrom", "colorTo", "pinned", "short_description"):
        assert meta[key]
    assert len(meta["short_description"]) <= 60  # the Hub's limit


def test_space_installs_the_debian_data_the_demo_reads():
    # Python packages: tests/test_package.py checks requirements.txt pins every import
    packages = (REPO / "packages.txt").read_text().split()
    assert packages == ["dataset-fashion-mnist"]


def test_streamlit_space_folder_runs_the_studio_in_docker():
    folder = REPO / "space" / "streamlit"
    meta = front_matter(folder / "README.md")
    assert meta["sdk"] == "docker" and meta["app_port"] == "8501"
    dockerfile = (folder / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "dataset-fashion-mnist" in dockerfile
    assert re.search(r"EXPOSE 8501\n", dockerfile)
    assert '"streamlit", "run", "app.py"' in dockerfile and '"--server.port=8501"' in dockerfile
    assert "useradd -m -u 1000 user" in dockerfile


def test_every_way_of_starting_the_studio_turns_the_file_watcher_off():
    """The watcher walks every folder under the app (the multi-GB .venv of `make app`
    included): a first visit then took 30 s instead of 5. Each entry point turns it off."""
    config = (REPO / ".streamlit" / "config.toml").read_text()  # `streamlit run app.py`
    server = re.search(r"^\[server\]\n(.*?)(?:^\[|\Z)", config, re.MULTILINE | re.DOTALL).group(1)
    assert re.search(r'^fileWatcherType = "none"$', server, re.MULTILINE)
    makefile = (REPO / "Makefile").read_text()
    app = re.search(r"^app:.*\n\t(.*)$", makefile, re.MULTILINE).group(1)
    assert "streamlit run app.py" in app and "--server.fileWatcherType none" in app
    dockerfile = (REPO / "space" / "streamlit" / "Dockerfile").read_text()
    assert '"--server.fileWatcherType=none"' in dockerfile
