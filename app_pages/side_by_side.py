"""Side by side: two flows from the same noise under one time slider, and their numbers."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ecnf.solvers import methods_for
from ecnf_display.compare import LESSONS, STRAIGHTNESS_STEPS, Side, side_by_side, state_at
from ecnf_display.pictures import points_image
from studio import checkpoint_meta, file_stamp, list_checkpoints, show_error, solver_controls
from studio.distributions import distribution_label
from studio.training import session_checkpoints_of

CUSTOM = "Choose both sides yourself"
SIDES = ("A", "B")
#: Short widget-key tags of the lessons (the custom comparison has its own widgets too).
LESSON_KEYS = {label: f"l{i}" for i, label in enumerate(LESSONS)}


@st.cache_data(max_entries=16, show_spinner=False)
def compare(sides: tuple[Side, ...], stamps: tuple[int, ...], n: int, seed: int) -> dict:
    """Both sides sampled and measured (cached on the files' stamps)."""
    results, floor = side_by_side(list(sides), n=n, seed=seed)
    return {"results": results, "floor": floor}


def checkpoint_name(path: str, models: dict[str, str]) -> str:
    return next((name for name, p in models.items() if p == path), path)


def side_controls(column, key: str, models: dict[str, str], start: tuple | None) -> Side:
    """One side's checkpoint and solver. Their widgets' keys carry the lesson, so choosing
    a lesson opens fresh widgets on its settings (``start``: checkpoint, method, steps)."""
    lesson = st.session_state["sbs_lesson"]
    tag = f"sbs_{LESSON_KEYS.get(lesson, 'custom')}_{key}"
    with column:
        st.subheader(f"Side {key}")
        names = list(models)
        index = names.index(start[0]) if start is not None and start[0] in names else 0
        name = st.selectbox("Checkpoint", names, index=index, key=f"{tag}_checkpoint")
        path = models[name]
        meta = checkpoint_meta(path, file_stamp(path))
        c1, c2 = st.columns(2)
        method, steps, tol = solver_controls(
            c1,
            c2,
            tag,
            methods=methods_for(meta.get("model") or {}),
            default=None if start is None else start[1:],
        )
        return Side(path, method, steps, tol)


st.title("Side by side")
st.caption(
    "Two flows carry the same noise to data under one time slider: two models on the same "
    "data, or one model under two solvers. Their numbers sit in one table."
)
models = list_checkpoints("2d") | session_checkpoints_of("2d")
if len(models) < 1:
    st.warning("No 2D checkpoints were found: train one on the 2D playground first.")
    st.stop()
lessons = [label for label, sides in LESSONS.items() if all(s[0] in models for s in sides)]
st.radio(
    "Lesson",
    [*lessons, CUSTOM],
    key="sbs_lesson",
    help="Each lesson sets both sides; change either side afterwards to explore.",
)
starts = LESSONS.get(st.session_state["sbs_lesson"], (None, None))
sides = tuple(
    side_controls(column, key, models, start)
    for column, key, start in zip(st.columns(2), SIDES, starts, strict=True)
)
c1, c2 = st.columns(2)
n = c1.slider("Points", 200, 2000, 1000, step=100, key="sbs_points")
seed = int(c2.number_input("Noise seed", 0, 2**31 - 1, 0, key="sbs_seed"))
try:
    with st.spinner("Integrating both sides..."):
        out = compare(sides, tuple(file_stamp(s.checkpoint) for s in sides), n, seed)
except (ValueError, FileNotFoundError) as error:
    show_error(error, "pick two checkpoints of the same data and source.")
    st.stop()

results, floor = out["results"], out["floor"]
meta = checkpoint_meta(sides[0].checkpoint, file_stamp(sides[0].checkpoint))
data = distribution_label(meta["dataset"])
t = st.slider("Time t (both sides)", 0.0, 1.0, 1.0, step=0.05, key="sbs_t")
for column, key, r in zip(st.columns(2), SIDES, results, strict=True):
    state, shown = state_at(r, t)
    column.image(points_image(state.numpy(), size=360, radius=1), width=360)
    solver = r.side.method + (
        f", {r.side.steps} steps" if r.side.steps else f", tol {r.side.tol:g}"
    )
    column.caption(
        f"**{key}**: `{checkpoint_name(r.side.checkpoint, models)}`, {solver}; "
        f"recorded state at t = {shown:.2f}"
    )

table = pd.DataFrame(
    [
        {
            "side": key,
            "checkpoint": checkpoint_name(r.side.checkpoint, models),
            "solver": r.side.method,
            "steps": r.side.steps,
            "NFE": r.nfe,
            f"W2 to fresh {data}": round(r.w2, 4),
            "x floor": round(r.w2 / floor, 2),
            "straightness": round(r.straightness, 4),
            "solve ms": round(1000 * r.seconds, 1),
        }
        for key, r in zip(SIDES, results, strict=True)
    ]
)
st.dataframe(table, hide_index=True)
st.caption(
    f"Both sides start from the same n = {n} source points (seed {seed}) and are measured "
    f"on the same n = {n} fresh {data} points: exact W2; the data floor {floor:.4f} is W2 "
    f"between two fresh sets of n = {n}. NFE: velocity evaluations the solver spent. "
    f"Straightness: mean path length over endpoint distance of each point's path under RK4 "
    f"with {STRAIGHTNESS_STEPS} steps, a property of the model (1 is straight)."
)
