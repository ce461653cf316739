"""The learner's tour, examples/tour.ipynb: executed here so it never rots.

- the notebook is executed in a fresh kernel (nbclient) from the cells of
  examples/make_tour.py and no cell raises; what it shows is what the tour's
  text says: the wrong formula and function are judged wrong, the fixed ones
  right, training lowers the loss, BPTT(T) equals full BPTT;
- the committed notebook has the same cells as make_tour.py, every code cell
  with its outputs, and none of the volatile metadata (execution counts,
  timings) that would make a rerun a diff.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the tour needs the test extra (nbformat, nbclient, ipykernel, matplotlib)")
pytest.importorskip("nbclient", reason="the tour needs the test extra (nbclient)")
pytest.importorskip("ipykernel", reason="the tour needs the test extra (ipykernel)")
pytest.importorskip("matplotlib", reason="the tour needs the test extra (matplotlib)")

ROOT = Path(__file__).resolve().parent.parent


def _make_tour():
    spec = importlib.util.spec_from_file_location("make_tour", ROOT / "examples" / "make_tour.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.outputs:
        if "text" in out:
            parts.append(out.text)
        data = out.get("data", {})
        parts.append(data.get("text/markdown") or data.get("text/plain", ""))
    return "\n".join(parts)


def _cell_after(nb, needle: str):
    """The first code cell whose source contains ``needle``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and needle in cell.source:
            return cell
    raise AssertionError(f"no code cell contains {needle!r}")


@pytest.fixture(scope="module")
def executed():
    tour = _make_tour()
    return tour.execute(tour.build())


def test_the_tour_runs_and_shows_what_it_says(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code[1:]), "every code cell after the imports shows something"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]

    derivation = _cell_after(executed, 'derive.derive("coursera")')
    assert "text/latex" in derivation.outputs[0].data  # the derivation as math

    wrong = _cell_after(executed, "wrong = derive.verify")
    right = _cell_after(executed, "right = derive.verify")
    assert _outputs_text(wrong).startswith("**wrong**") and "missing parenthesis" in _outputs_text(wrong)
    assert _outputs_text(right).startswith("**right**")

    checks = [c for c in code if "derive.check_function" in c.source]
    assert len(checks) == 2
    assert _outputs_text(checks[0]).startswith("**wrong**") and "derivative of tanh" in _outputs_text(checks[0])
    assert _outputs_text(checks[1]).startswith("**right**")

    training = _cell_after(executed, "lstm_backward")
    assert any("image/png" in o.get("data", {}) for o in training.outputs)
    line = [ln for ln in _outputs_text(training).splitlines() if ln.startswith("loss: first step")][0]
    first, last = float(line.split()[3].rstrip(",")), float(line.split()[7])
    assert last < 0.5 * first, line

    truncated = _cell_after(executed, "truncate=k")
    assert any("image/png" in o.get("data", {}) for o in truncated.outputs)
    assert "k = T gives full BPTT exactly: True" in _outputs_text(truncated)


def test_the_committed_notebook_is_the_tour_with_outputs():
    tour = _make_tour()
    committed = nbformat.read(ROOT / "examples" / "tour.ipynb", as_version=4)
    nbformat.validate(committed)
    assert tour.sources(committed) == tour.sources(tour.build()), "run python examples/make_tour.py"
    assert committed.metadata == tour.build().metadata
    for cell in committed.cells:
        assert cell.metadata == {}
        if cell.cell_type == "code":
            assert cell.execution_count is None
            assert all(o.get("execution_count") is None for o in cell.outputs)
    assert all(c.outputs for c in committed.cells if c.cell_type == "code" and "import derive" not in c.source)
