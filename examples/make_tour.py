"""Build examples/tour.ipynb, the learner's tour, and execute it.

    python examples/make_tour.py            # write examples/tour.ipynb with its outputs
    python examples/make_tour.py --check    # exit 1 if the committed notebook's cells differ

Contract. The notebook's cells are the list ``CELLS`` below (Markdown and code,
in order); ``build()`` turns them into an nbformat-4 notebook and ``execute()``
runs it with nbclient in a fresh kernel, from the repository root (so
``import derive`` finds this checkout and ``generated/`` is at hand). The
written file is made deterministic: cell ids are ``cell-<n>``, execution
counts are removed, the kernel's and cells' volatile metadata are stripped,
figures are PNGs without the ``Software`` stamp, and every random number comes
from a fixed seed. What can still differ between machines is the last digits
of floating-point output and the pixels of the figures (fonts, matplotlib
version); ``--check`` therefore compares the cells' sources, not the outputs.
tests/test_tour.py executes the notebook and fails on any error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOK = HERE / "tour.ipynb"
TIMEOUT = 120  # seconds a cell may take

MD, PY = "markdown", "code"

CELLS: list[tuple[str, str]] = [
    (MD, """\
# A learner's tour of `derive`

Backpropagation through time for the Coursera *Sequence Models* LSTM, derived by
the computer in the course's own names. This notebook walks the path a learner takes:

1. derive the LSTM and read the backward pass as math;
2. verify a hand-written formula — a wrong one, then the right one;
3. check a hand-written backward *function*;
4. train a small character-level model with the generated NumPy module;
5. see how truncated BPTT(k) approaches the true gradient as k grows.

Regenerate this notebook, outputs included, with `python examples/make_tour.py`."""),
    (PY, """\
import importlib.util
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import derive
from derive.numeric import evaluate

# the repository root: Jupyter starts the kernel in examples/, a script may start it at the root
ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "generated" / "coursera.py").is_file())
%config InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "metadata": {"Software": None}}"""),
    (MD, """\
## 1. The course LSTM, derived

`derive.derive("coursera")` reads the cell's forward equations (the notebook's
`lstm_cell_forward`) and derives every backward equation symbolically. In Jupyter a
derivation shows itself as math: the forward pass, then the backward pass, in the
course's notation ($\\Gamma_f$, $\\tilde c$, $a^{\\langle t \\rangle}$, …)."""),
    (PY, """\
d = derive.derive("coursera")
d"""),
    (MD, """\
Each backward quantity can be read on its own. `closed_form` substitutes every
intermediate gradient, leaving the formula a learner writes by hand, here for the
forget gate's pre-activation gradient `dft`:"""),
    (PY, """\
d.closed_form("dft")"""),
    (MD, """\
## 2. Verify a formula: first wrong, then right

A classic slip: the derivative of the sigmoid, `ft*(1-ft)`, multiplies only the
last term instead of the whole sum. `derive.verify` evaluates the formula at random
consistent states of the network, and when it is wrong, says which term differs and why."""),
    (PY, """\
wrong = derive.verify("coursera", "dft",
                      "dc_next*c_prev + ot*(1-tanh(c_next)**2)*c_prev*da_next*ft*(1-ft)")
wrong   # in Jupyter a verdict shows as math and Markdown; print(wrong) gives plain text"""),
    (MD, "With the parenthesis where it belongs, the verdict is *right*, proven symbolically as well as on numbers:"),
    (PY, """\
right = derive.verify("coursera", "dft",
                      "(dc_next*c_prev + ot*(1-tanh(c_next)**2)*c_prev*da_next)*ft*(1-ft)")
right"""),
    (MD, """\
## 3. Check a backward function

`derive.check_function` calls your function with a consistent random state, filling
its parameters by name, and compares what it returns with the derivation. Here is the
course's `rnn_cell_backward` (the plain RNN, preset `coursera_rnn`) written the way a
learner might on a first try — forgetting the derivative of `tanh`:"""),
    (PY, """\
def rnn_cell_backward(da_next, cache):
    a_next, a_prev, xt, parameters = cache
    dtanh = da_next                                  # should be da_next * (1 - a_next**2)
    dxt = parameters["Wax"].T @ dtanh
    dWax = dtanh @ xt.T
    da_prev = parameters["Waa"].T @ dtanh
    dWaa = dtanh @ a_prev.T
    dba = np.sum(dtanh, axis=1, keepdims=True)
    return {"dxt": dxt, "da_prev": da_prev, "dWax": dWax, "dWaa": dWaa, "dba": dba}

derive.check_function("coursera_rnn", rnn_cell_backward)"""),
    (MD, "The diagnosis names the mistake. Fixed:"),
    (PY, """\
def rnn_cell_backward(da_next, cache):
    a_next, a_prev, xt, parameters = cache
    dtanh = da_next * (1 - a_next**2)
    dxt = parameters["Wax"].T @ dtanh
    dWax = dtanh @ xt.T
    da_prev = parameters["Waa"].T @ dtanh
    dWaa = dtanh @ a_prev.T
    dba = np.sum(dtanh, axis=1, keepdims=True)
    return {"dxt": dxt, "da_prev": da_prev, "dWax": dWax, "dWaa": dWaa, "dba": dba}

derive.check_function("coursera_rnn", rnn_cell_backward)"""),
    (MD, """\
## 4. Train a character-level LSTM with the generated module

`generated/coursera.py` is the NumPy module `lstm-derive build` writes for this cell:
the course's `lstm_forward` / `lstm_backward`, with the assignment's API. It needs
nothing but NumPy; import it by path. The loss head (softmax and cross entropy) stays
outside, as in the course: we hand `lstm_backward` the gradient `da` that the head
passes to every hidden state, and update the weights with Adagrad."""),
    (PY, """\
spec = importlib.util.spec_from_file_location("coursera", ROOT / "generated" / "coursera.py")
coursera = importlib.util.module_from_spec(spec)
spec.loader.exec_module(coursera)

text = "hello world. the world says hello back. " * 4
chars = sorted(set(text))
index = {c: i for i, c in enumerate(chars)}
n_x = n_y = len(chars)
n_a, T_x = 32, 20

rng = np.random.default_rng(0)
params = {}
for gate in "fico":
    params["W" + gate] = rng.normal(0, 0.1, (n_a, n_a + n_x))
    params["b" + gate] = np.zeros((n_a, 1))
params["bf"] += 1.0                                   # remember by default
params["Wy"] = rng.normal(0, 0.1, (n_y, n_a))
params["by"] = np.zeros((n_y, 1))

def one_hot(s):
    x = np.zeros((len(chars), 1, len(s)))            # (n_x, m = 1, T_x)
    x[[index[c] for c in s], 0, range(len(s))] = 1
    return x

def loss_and_grads(params, inputs, targets):
    x = one_hot(inputs)
    a, y, c, caches = coursera.lstm_forward(x, np.zeros((n_a, 1)), params)
    labels = [index[ch] for ch in targets]
    loss = -np.sum(np.log(y[labels, 0, range(len(targets))]))
    dz = y.copy()                                     # softmax + cross entropy: y - onehot
    dz[labels, 0, range(len(targets))] -= 1
    grads = coursera.lstm_backward(np.einsum("ya,ymt->amt", params["Wy"], dz), caches)
    grads = {name: grads["d" + name] for name in "Wf bf Wi bi Wc bc Wo bo".split()}
    grads["Wy"] = np.einsum("ymt,amt->ya", dz, a)
    grads["by"] = dz.sum(axis=(1, 2))[:, None]
    return loss / len(targets), grads

memory = {name: np.zeros_like(p) for name, p in params.items()}
losses = []
for step in range(600):
    start = int(rng.integers(0, len(text) - T_x - 1))
    loss, grads = loss_and_grads(params, text[start:start + T_x], text[start + 1:start + T_x + 1])
    losses.append(loss)
    for name, g in grads.items():                     # Adagrad
        np.clip(g, -5, 5, out=g)
        memory[name] += g * g
        params[name] -= 0.1 * g / np.sqrt(memory[name] + 1e-8)

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(losses, lw=1)
ax.set_xlabel("training step")
ax.set_ylabel("cross entropy per character")
ax.set_title("character-level LSTM, generated/coursera.py + Adagrad")
plt.show()
print(f"loss: first step {losses[0]:.2f}, last 20 steps {np.mean(losses[-20:]):.2f} (uniform guess: {np.log(n_y):.2f})")"""),
    (MD, "What has it learned? Sample greedily from the trained model, one character at a time:"),
    (PY, """\
def sample(params, seed, length):
    out = seed
    for _ in range(length):
        _, y, _, _ = coursera.lstm_forward(one_hot(out), np.zeros((n_a, 1)), params)
        out += chars[int(np.argmax(y[:, 0, -1]))]
    return out

print(repr(sample(params, "hello ", 30)))"""),
    (MD, """\
## 5. Truncated BPTT: how the gradient error shrinks with k

BPTT(k) lets the gradient of each step's loss flow back through the last k steps
only. `derive.evaluate.run(d, seq, truncate=k)` computes it with the reference
interpreter; `truncate=None` is full BPTT. A sequence is built with
`evaluate.random_sequence(d, sizes, steps, rng)`: random parameters, inputs,
initial states and targets, in float64. The relative error of the parameter
gradients against full BPTT falls as k grows, and is exactly zero at k = T."""),
    (PY, """\
T = 12
sizes = {"n_x": 3, "n_a": 5, "n_y": 3, "m": 2}
seq = evaluate.random_sequence(d, sizes, T, np.random.default_rng(5), scale=0.8)
_, full = evaluate.run(d, seq)
params_names = d.cell.names("param")

def rel_error(k):
    _, truncated = evaluate.run(d, seq, truncate=k)
    worst = max(np.max(np.abs(truncated[d.gradient_name(p)] - full[d.gradient_name(p)])) for p in params_names)
    scale = max(np.max(np.abs(full[d.gradient_name(p)])) for p in params_names)
    return worst / scale

ks = list(range(1, T + 1))
errors = [rel_error(k) for k in ks]
fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy(ks[:-1], errors[:-1], "o-")
ax.set_xlabel("k (steps the gradient flows back through)")
ax.set_ylabel("relative error vs full BPTT")
ax.set_title(f"BPTT(k) on the course LSTM, T = {T}")
plt.show()
print("k = T gives full BPTT exactly:", errors[-1] == 0.0)"""),
    (MD, """\
The error falls roughly geometrically: each step back multiplies the carried
gradient by the recurrent Jacobian, whose norm here is below one. (That it shrinks
monotonically is a property of this sequence, not a theorem.)

Where next: `lstm-derive verify --help`, `lstm-derive check --help`, and the
write-ups in `generated/` (`coursera.md`, `coursera.tex`)."""),
]


def build() -> nbformat.NotebookNode:
    """The notebook of ``CELLS``, without outputs."""
    nb = nbformat.v4.new_notebook()
    for n, (kind, source) in enumerate(CELLS):
        cell = nbformat.v4.new_markdown_cell(source) if kind == MD else nbformat.v4.new_code_cell(source)
        cell.id = f"cell-{n}"
        nb.cells.append(cell)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = TIMEOUT) -> nbformat.NotebookNode:
    """Run ``nb`` in a fresh python3 kernel started in examples/, as Jupyter starts
    it for a learner who opens the notebook there; raises nbclient's
    CellExecutionError on the first cell that fails."""
    from nbclient import NotebookClient

    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + env_path if env_path else "")
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
    client.execute()
    return nb


def scrub(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip what changes from run to run: execution counts, timings, kernel info."""
    nb.metadata = build().metadata
    for cell in nb.cells:
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.execution_count = None
            for out in cell.outputs:
                if "execution_count" in out:
                    out.execution_count = None
    return nb


def sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if examples/tour.ipynb's cells differ from CELLS")
    parser.add_argument("-o", "--output", type=Path, default=NOTEBOOK)
    args = parser.parse_args(argv)
    if args.check:
        committed = nbformat.read(args.output, as_version=4)
        if sources(committed) != sources(build()):
            print(f"{args.output}: its cells differ from examples/make_tour.py; run python examples/make_tour.py",
                  file=sys.stderr)
            return 1
        print(f"{args.output}: up to date")
        return 0
    nb = scrub(execute(build()))
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    nbformat.validate(nbformat.reads(text, as_version=4))
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
