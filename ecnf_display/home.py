"""The studio home page's pictures, drawn from the shipped checkpoints and stored beside them.

A first visitor should see the home page within a few seconds. Importing torch alone takes
about 4 s on two cores and drawing a plotly chart another 2 s in the browser, so the page
shows PNG pictures instead. :func:`write` computes and draws them once, from the shipped
checkpoints (``python scripts/make_cards.py`` calls it), into ``checkpoints/home/``, with
``home.json`` saying what each picture shows, how it was sampled (solver, steps, NFE, seed)
and the SHA-256 of every checkpoint they came from, and ``home.npz`` holding the sampled
arrays so that the tests can recompute them. :func:`read` returns those pictures only while
every checkpoint is unchanged; otherwise (a moved ``ECNF_CHECKPOINTS_DIR``, a retrained model)
the page calls :func:`compute`, which is what :func:`write` stores, done live.

Nothing here imports torch until something is computed.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ecnf.shipped import checkpoints_dir, list_checkpoints

__all__ = [
    "FOLDER",
    "GALLERY_LOSSES",
    "GALLERY_TARGETS",
    "Panel",
    "compute",
    "draw",
    "read",
    "sample",
    "sources",
    "stored_arrays",
    "write",
]

#: The folder under the checkpoint root that holds the stored pictures.
FOLDER = "home"
MANIFEST, ARRAYS = "home.json", "home.npz"
FORMAT = 1

GALLERY_TARGETS = ("moons", "8gaussians", "checkerboard", "2spirals", "swissroll")
GALLERY_LOSSES = ("otcfm", "fm")
PICTURE_MODEL, PICTURE_POINTS, PICTURE_STEPS = "moons_fm", 60, 20
GALLERY_POINTS, GALLERY_STEPS = 1000, 10
#: RK4 with 5 steps (20 evaluations) of 8 images, 4 to a row, of the best 3 image models.
IMAGE_STEPS, IMAGE_COUNT, IMAGE_MODELS = 5, 8, 3
SEED = 0


@dataclass(frozen=True)
class Panel:
    """One picture of the home page and how it was made."""

    key: str  # "picture", "gallery_otcfm", "gallery_fm" or "images/NAME"
    png: bytes
    checkpoints: tuple[str, ...]  # "2d/moons_fm", ...
    method: str
    steps: int
    nfe: int  # velocity evaluations per sample, from the solver
    samples: int  # per checkpoint
    seed: int

    def facts(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "png"}


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sources(root: Path | None = None) -> dict[str, str]:
    """``{"2d/NAME": sha256, "images/NAME": sha256}`` of every checkpoint the pictures may
    use; the stored pictures are current while this is unchanged."""
    root = Path(root) if root is not None else checkpoints_dir()
    found = {}
    for kind in ("2d", "images"):
        for name, path in list_checkpoints(kind, root).items():
            found[f"{kind}/{name}"] = _digest(path)
    return found


def read(root: Path | None = None) -> dict[str, Panel] | None:
    """The stored pictures by key, or ``None`` when there are none or any checkpoint they
    came from (or any checkpoint beside them) has changed since they were drawn."""
    root = Path(root) if root is not None else checkpoints_dir()
    folder = root / FOLDER
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT or manifest.get("sources") != sources(root):
        return None
    panels = {}
    for facts in manifest["panels"]:
        try:
            png = (folder / facts["file"]).read_bytes()
        except OSError:
            return None
        fields = {k: v for k, v in facts.items() if k != "file"}
        panels[facts["key"]] = Panel(
            png=png, **{**fields, "checkpoints": tuple(fields["checkpoints"])}
        )
    return panels


# ---- computing ---------------------------------------------------------------------------


def sample(root: Path | None = None) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Every array the pictures show, sampled from the checkpoints under ``root``, and the
    facts of each panel (without its picture). Arrays: ``picture/x0``, ``picture/x1``,
    ``picture/flow`` (steps + 1, points, 2), ``gallery/NAME`` (points, 2) and
    ``images/NAME`` (a uint8 grid)."""
    import torch

    from ecnf import integrate, load, sample_toy
    from ecnf.export import image_grid
    from ecnf.shipped import rank_image_checkpoints

    root = Path(root) if root is not None else checkpoints_dir()
    two_d, images = list_checkpoints("2d", root), list_checkpoints("images", root)
    arrays: dict[str, np.ndarray] = {}
    facts: list[dict] = []

    def noise(n: int) -> torch.Tensor:
        return sample_toy("gaussian", n, generator=torch.Generator().manual_seed(SEED))

    if PICTURE_MODEL in two_d:
        g = torch.Generator().manual_seed(SEED)
        x0 = sample_toy("gaussian", PICTURE_POINTS, generator=g)
        x1 = sample_toy("moons", PICTURE_POINTS, generator=g)
        sol = integrate(
            load(two_d[PICTURE_MODEL]), x0, method="rk4", steps=PICTURE_STEPS,
            return_trajectory=True,
        )  # fmt: skip
        arrays |= {"picture/x0": x0.numpy(), "picture/x1": x1.numpy()}
        arrays["picture/flow"] = sol.trajectory.cpu().numpy()
        facts.append(_facts("picture", [f"2d/{PICTURE_MODEL}"], "rk4", PICTURE_STEPS,
                            sol.nfe, PICTURE_POINTS))  # fmt: skip
    for loss in GALLERY_LOSSES:
        names = [f"{t}_{loss}" for t in GALLERY_TARGETS if f"{t}_{loss}" in two_d]
        nfe = None
        for name in names:
            x0 = noise(GALLERY_POINTS)
            sol = integrate(load(two_d[name]), x0, method="rk4", steps=GALLERY_STEPS)
            arrays[f"gallery/{name}"] = sol.x.cpu().numpy()
            nfe = sol.nfe
        if names:
            facts.append(_facts(f"gallery_{loss}", [f"2d/{n}" for n in names], "rk4",
                                GALLERY_STEPS, nfe, GALLERY_POINTS))  # fmt: skip
    for name in rank_image_checkpoints(images)[:IMAGE_MODELS]:
        model = load(images[name])
        shape = tuple(model.config.data_shape)
        g = torch.Generator().manual_seed(SEED)
        x0 = torch.randn((IMAGE_COUNT, *shape), generator=g)
        sol = integrate(model, x0, method="rk4", steps=IMAGE_STEPS)
        arrays[f"images/{name}"] = image_grid(sol.x.cpu(), nrow=4)
        facts.append(_facts(f"images/{name}", [f"images/{name}"], "rk4", IMAGE_STEPS,
                            sol.nfe, IMAGE_COUNT))  # fmt: skip
    return arrays, facts


def _facts(key, checkpoints, method, steps, nfe, samples) -> dict:
    return {"key": key, "checkpoints": list(checkpoints), "method": method, "steps": steps,
            "nfe": int(nfe), "samples": samples, "seed": SEED}  # fmt: skip


def draw(arrays: dict[str, np.ndarray], facts: dict) -> bytes:
    """The PNG of one panel, drawn from the arrays :func:`sample` returns."""
    key = facts["key"]
    if key.startswith("images/"):
        from PIL import Image

        from .pictures import enlarged

        buffer = io.BytesIO()
        Image.fromarray(enlarged(arrays[key], 480)).save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ecnf.data import TOY_EXTENT

    grey, blue, red = (0.47, 0.47, 0.47, 0.35), "#1f77b4", "#d62728"
    if key == "picture":
        x0, x1, flow = arrays["picture/x0"], arrays["picture/x1"], arrays["picture/flow"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), dpi=100)
        for a, b in zip(x0, x1, strict=True):
            axes[0].plot([a[0], b[0]], [a[1], b[1]], color=grey, lw=0.8)
        axes[1].plot(flow[:, :, 0], flow[:, :, 1], color=grey, lw=0.8)
        for ax, end in ((axes[0], x1), (axes[1], flow[-1])):
            ax.scatter(x0[:, 0], x0[:, 1], s=14, color=blue, label="noise x0", zorder=3)
            ax.scatter(end[:, 0], end[:, 1], s=14, color=red, label="data x1", zorder=3)
        axes[0].set_title("Training: straight lines x_t = (1 - t) x0 + t x1")
        axes[1].set_title("Sampling: the learned flow dx/dt = v(x, t)")
        axes[0].legend(loc="upper left", frameon=False)
    else:
        names = facts["checkpoints"]
        fig, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 3.2), dpi=100)
        axes = np.atleast_1d(axes)
        for ax, name in zip(axes, names, strict=True):
            x = arrays[f"gallery/{name.split('/', 1)[1]}"]
            ax.scatter(x[:, 0], x[:, 1], s=2, color=blue, alpha=0.6, linewidths=0)
            ax.set_title(name.split("/", 1)[1].rsplit("_", 1)[0])
    for ax in np.atleast_1d(axes):
        ax.set(xlim=(-TOY_EXTENT, TOY_EXTENT), ylim=(-TOY_EXTENT, TOY_EXTENT), aspect="equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    return buffer.getvalue()


def compute(root: Path | None = None) -> dict[str, Panel]:
    """The pictures :func:`write` stores, computed and drawn now (seconds, imports torch)."""
    arrays, facts = sample(root)
    return {f["key"]: Panel(png=draw(arrays, f), **{**f, "checkpoints": tuple(f["checkpoints"])})
            for f in facts}  # fmt: skip


def write(root: Path | None = None) -> Path:
    """Compute, draw and store the pictures in ``root/home/``; returns the manifest's path."""
    from ecnf._io import atomic_write

    root = Path(root) if root is not None else checkpoints_dir()
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    arrays, facts = sample(root)
    for f in facts:
        f["file"] = f["key"].replace("/", "_") + ".png"
        atomic_write(folder / f["file"], draw(arrays, f))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(folder / ARRAYS, buffer.getvalue())
    manifest = {"format": FORMAT, "sources": sources(root), "panels": facts}
    atomic_write(folder / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return folder / MANIFEST


def stored_arrays(root: Path | None = None) -> dict[str, np.ndarray]:
    """The arrays stored with the pictures (for the tests that recompute them)."""
    root = Path(root) if root is not None else checkpoints_dir()
    with np.load(root / FOLDER / ARRAYS) as data:
        return {k: data[k] for k in data.files}


if __name__ == "__main__":  # python -m ecnf_display.home
    print(f"wrote {write()}")
