"""Home: what a CNF and flow matching are, a picture, a gallery, links to every page.

The pictures are PNGs drawn from the shipped checkpoints (:mod:`ecnf_display.home`): stored
beside them while they are current, so that a first visitor waits for neither torch nor a
plotly chart, and computed here otherwise.
"""

from __future__ import annotations

import streamlit as st

from ecnf_display import home
from studio import PAGES, file_stamp


@st.cache_data(max_entries=4, show_spinner=False)
def stored_panels(root: str, stamps: tuple) -> dict | None:
    """The stored pictures while every checkpoint is unchanged (keyed by the files' stamps)."""
    del stamps
    return home.read(root)


@st.cache_data(max_entries=4, show_spinner=False)
def computed_panels(root: str, stamps: tuple) -> dict:
    """The same pictures, sampled and drawn now (a moved or changed checkpoint folder)."""
    del stamps
    return home.compute(root)


def panels() -> tuple[dict, str]:
    """The pictures by key, and a sentence saying where they come from."""
    from ecnf.shipped import checkpoints_dir, list_checkpoints

    root = checkpoints_dir()
    stamps = tuple(
        (path, file_stamp(path))
        for kind in ("2d", "images")
        for path in list_checkpoints(kind, root).values()
    )
    found = stored_panels(str(root), stamps)
    if found is not None:
        return found, (
            f"Drawn from these very checkpoint files by `python scripts/make_cards.py` (stored "
            f"in `{home.FOLDER}/` beside them; their SHA-256 are checked on every visit)."
        )
    with st.spinner("Sampling the checkpoints for the pictures..."):
        return computed_panels(str(root), stamps), "Sampled on this server from the checkpoints."


def how(panel) -> str:
    """How a panel was sampled, from its own facts."""
    return (
        f"{panel.samples} samples per model from seeded noise (seed {panel.seed}), "
        f"{panel.method.upper()} with {panel.steps} steps (NFE = {panel.nfe})"
    )


st.title("ECNF studio")
st.markdown(
    "A **continuous normalizing flow** (CNF) turns noise into data by following a velocity "
    "field: a sample of a simple source $p_0$ (here a standard normal) is carried along the "
    "ordinary differential equation below from $t = 0$ to $t = 1$, and where it lands is a "
    "sample of the model. Because the map is invertible, the same field also gives exact "
    "log-densities. **Flow matching** trains the velocity network $v_\\theta$ without ever "
    "solving that ODE: pair noise $x_0$ with data $x_1$, pick a time $t$, and regress the "
    "network at the point on the straight line between them onto the line's direction."
)
eq1, eq2, eq3 = st.columns(3)
eq1.latex(r"\frac{dx}{dt} = v_\theta(x, t), \quad x(0) = x_0 \sim p_0")
eq2.latex(r"x_t = (1 - t)\, x_0 + t\, x_1")
eq3.latex(r"\mathcal{L}(\theta) = \mathbb{E}\,\lVert v_\theta(x_t, t) - (x_1 - x_0) \rVert^2")
st.caption(
    "OT-CFM pairs each batch by minibatch optimal transport so that the lines cross less and "
    "the learned flow is straighter: fewer solver steps give the same samples."
)

try:
    shown, origin = panels()
except (ValueError, OSError) as error:  # CheckpointError is a ValueError
    st.warning(f"The pictures could not be drawn: {error}")
    shown, origin = {}, ""

st.header("The picture")
picture = shown.get("picture")
if picture is None:
    st.info(f"The picture uses the shipped checkpoint `{home.PICTURE_MODEL}`, which is not there.")
else:
    st.image(picture.png)
    st.caption(
        "Left: the straight paths flow matching trains on (random pairs cross). Right: the "
        f"shipped `{home.PICTURE_MODEL}` model integrated with {picture.method.upper()} "
        f"({picture.steps} steps, NFE = {picture.nfe}) from the same noise: the learned paths "
        "cannot cross, so they bend."
    )

st.header("Gallery")
loss = st.radio(
    "Training objective",
    list(home.GALLERY_LOSSES),
    format_func={"otcfm": "OT-CFM", "fm": "flow matching"}.get,
    horizontal=True,
    key="home_gallery_loss",
)
gallery = shown.get(f"gallery_{loss}")
if gallery is not None:
    st.image(gallery.png)
    st.caption(f"{how(gallery)}, shipped `*_{loss}` checkpoints. {origin}")
else:
    st.info("No shipped 2D checkpoints were found; train one on the 2D playground.")

image_panels = [p for key, p in shown.items() if key.startswith("images/")]
if image_panels:
    st.subheader("Images")
    for column, panel in zip(st.columns(len(image_panels)), image_panels, strict=True):
        name = panel.key.split("/", 1)[1]
        column.image(
            panel.png,
            caption=f"{name}: {panel.samples} samples, {panel.method.upper()}, NFE = {panel.nfe}",
        )
else:
    st.caption("No image checkpoint is shipped yet; the Image trajectories page can train one.")

st.header("Pages")
for path, _, title, icon in PAGES[1:]:
    st.page_link(path, label=title, icon=icon)
