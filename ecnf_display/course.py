"""The exercises of the teaching notebooks: the check that runs after each one.

Each exercise in ``notebooks/`` is a code cell that a student fills in (it starts with
``# Exercise N.M`` and raises ``NotImplementedError`` until then), followed by a check cell
that runs the student's code inside :func:`exercise`. The solutions are kept apart, in
``notebooks/solutions/`` (one Markdown file per notebook), and ``scripts/notebooks.py solve``
writes the notebooks with them filled in; that is what the test suite runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SOLUTIONS_DIR", "exercise"]

#: Where the solutions live: one ``NN_name.md`` per notebook.
SOLUTIONS_DIR = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


@contextmanager
def exercise(number: str) -> Iterator[None]:
    """Run the checks of exercise ``number``; say whether it is correct or not yet attempted.

    A failed ``assert`` inside the block propagates with its message (the answer is wrong).
    ``NotImplementedError`` (the untouched template) is reported and swallowed, so that a
    notebook with open exercises still runs top to bottom.
    """
    try:
        yield
    except NotImplementedError:
        print(
            f"Exercise {number}: not attempted yet. Fill in the cell above and run this one "
            f"again; the solution is in notebooks/solutions/."
        )
        return
    print(f"Exercise {number}: correct")
