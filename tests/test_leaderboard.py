"""The few-step leaderboard reads the saved evaluations: best solver per exact budget, every
objective listed, differing budgets flagged, and RESULTS.md shows the same table."""

from pathlib import Path

from ecnf_display.leaderboard import best_at_nfe, few_step_rows, render, shipped_leaderboard

ROOT = Path(__file__).resolve().parents[1]


def evaluation(values: dict[tuple[str, int, int], float], floor: float = 0.1) -> dict:
    rows = [
        {"method": m, "steps": s, "nfe": n, "w2": w, "mmd2": 0.0} for (m, s, n), w in values.items()
    ]
    rows.append({"method": "dopri5", "steps": None, "nfe": 1, "w2": 0.0, "mmd2": 0.0})
    return {"rows": rows, "floor": {"w2": floor, "mmd2": 0.0}}


def test_best_solver_at_an_exact_budget_and_never_an_adaptive_row():
    ev = evaluation({("euler", 2, 2): 0.5, ("midpoint", 1, 2): 0.3, ("euler", 1, 1): 0.9})
    assert best_at_nfe(ev, 2) == (0.3, "midpoint 1")
    assert best_at_nfe(ev, 1) == (0.9, "euler 1")  # the adaptive row's NFE 1 is not counted
    assert best_at_nfe(ev, 4) is None


def test_rows_cover_every_objective_and_flag_differing_budgets():
    evaluations = {
        "moons_fm": evaluation({("euler", 1, 1): 2.0}),
        "moons_meanflow": evaluation({("meanflow", 1, 1): 0.2}),
    }
    metadata = {
        "moons_fm": {"loss": "fm", "dataset": "moons", "steps": 3000, "batch_size": 256},
        "moons_meanflow": {
            "loss": "meanflow",
            "dataset": "moons",
            "steps": 9000,
            "batch_size": 256,
        },
    }
    rows = few_step_rows(evaluations, metadata)["moons"]
    assert [r["loss"] for r in rows] == ["fm", "otcfm", "reflow", "consistency", "meanflow"]
    assert rows[1]["name"] is None and rows[4]["scores"][1] == (0.2, "meanflow 1")
    text = render({"moons": rows})
    assert "The budgets differ" in text and "| OT-CFM | not trained |" in text
    assert "0.2000 (meanflow 1; 2.00x floor)" in text


def test_results_file_shows_the_leaderboard_of_the_shipped_models():
    assert shipped_leaderboard() in (ROOT / "checkpoints" / "RESULTS.md").read_text()
