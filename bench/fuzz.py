"""Fuzz the whole path: formulas through ``derive.verify`` and mutated specs
through loading and deriving. Reports every exception outside the project's
error types (must be 0) and the slowest case, by wall time and by the process's CPU
time (formulas: under 1 s). On a shared machine the wall time grows with the load; the
CPU time (``time.process_time``, the worker's own) is the honest measure of the work.

    python bench/fuzz.py --formulas 100000 --specs 10000 --workers 2 --seed 1

Formulas are made by :func:`formula` (Python syntax) and :func:`latex_formula`
(LaTeX), from a grammar of the notation's names, operators, calls, indexing,
powers, huge constants and hostile tokens, then sometimes cut or spliced at
random; specs by :func:`mutate_spec`, which edits a preset's TOML text (a value
replaced by another type, a key dropped or invented, a line duplicated, a
character flipped). tests/test_hostile_fuzz.py runs a few hundred of each.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NAMES = ["h_prev", "z_h", "W_hh", "c_prev", "z_f", "h", "ft", "it", "cct", "ot", "c_prev", "a_prev", "dc", "da", "Wf", "bf", "concat", "xt", "y", "n_a", "m",
         "dft", "h", "x", "W", "c", "dWf", "sum_t", "later", "T", "t", "ｆt", "__class__", "lambda", "np"]
FUNCS = ["sigmoid", "tanh", "exp", "log", "np.tanh", "softmax", "concat", "np.dot", "np.power", "np.sum",
         "np.concatenate", "np.multiply", "np.square", "sum_t", "later", "eval", "__import__", "open"]
HOSTILE = ["9**16", "10**12", "9" * 40, "1e308", "0.0", "1/0", "(-1)**0.5", "[]", "{}", "'s'", "\\", "#", ";",
           "\x00", "…", "∘", "⊙", "ᵀ", "σ", "lambda x: x", "x if y else z", "[:, ::2]", "[-1:]", "[7]", "[0]",
           ".T", ".__class__", "**-16", "**16", "@", "%", "//", "==", ",", "*", "(", ")", "]", "[", "=", "+="]
LATEX_NAMES = [r"\Gamma_f", r"\Gamma_u", r"c^{\langle t-1 \rangle}", r"a^{\langle t \rangle}", r"\tilde{c}",
               r"W_f", r"b_f", r"dc", r"x_t", r"h_{t-1}", r"\sigma", r"\tanh", r"\delta", r"\partial"]
LATEX_HOSTILE = [r"\input{/etc/hostname}", r"\def\x{1}", r"\csname x\endcsname", "^^5c", r"\write18{x}",
                 "^{16}", "^{T}", "_{7}", "_{[0:3]}", r"\frac{1}{0}", r"\odot", r"\cdot", r"\circ", "9" * 40,
                 "{", "}", r"\left(", r"\right)", "&", "$", "%", r"\sum_t", "'", r"\begin{bmatrix}", r"\\"]


def formula(rng: random.Random, depth: int = 0) -> str:
    """A random formula in the Python syntax (often malformed, sometimes hostile)."""
    r = rng.random()
    if depth > 6 or r < 0.25:
        return rng.choice(NAMES + [str(rng.randint(0, 20)), "%.3g" % rng.uniform(-3, 3)])
    if r < 0.5:
        op = rng.choice(["+", "-", "*", "/", "@", "**"])
        right = str(rng.choice([2, 16, 17, -16, 0.5])) if op == "**" else formula(rng, depth + 1)
        return f"({formula(rng, depth + 1)}) {op} {right}"
    if r < 0.65:
        args = ", ".join(formula(rng, depth + 1) for _ in range(rng.randint(0, 3)))
        return f"{rng.choice(FUNCS)}({args})"
    if r < 0.75:
        return f"{formula(rng, depth + 1)}[{rng.choice(['0', '7', '-1', ':', '2:', ':n_a', 'n_a:', ':, 1:3'])}]"
    if r < 0.85:
        return f"-{formula(rng, depth + 1)}" if rng.random() < 0.5 else f"{formula(rng, depth + 1)}.T"
    return rng.choice(HOSTILE) + formula(rng, depth + 1) if rng.random() < 0.5 else formula(rng, depth + 1) + rng.choice(HOSTILE)


def latex_formula(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if depth > 6 or r < 0.3:
        return rng.choice(LATEX_NAMES + [str(rng.randint(0, 9))])
    if r < 0.55:
        op = rng.choice(["+", "-", r"\odot", r"\cdot", "", r"\circ"])
        return f"{latex_formula(rng, depth + 1)} {op} {latex_formula(rng, depth + 1)}"
    if r < 0.7:
        f = rng.choice([r"\sigma", r"\tanh", r"\exp", r"\log", ""])
        return f + r"\left(" + latex_formula(rng, depth + 1) + r"\right)"
    if r < 0.8:
        return rf"\frac{{{latex_formula(rng, depth + 1)}}}{{{latex_formula(rng, depth + 1)}}}"
    if r < 0.9:
        return "{" + latex_formula(rng, depth + 1) + "}" + rng.choice(["^{T}", "^{2}", "^{16}", "_{7}", "^{-1}"])
    return rng.choice(LATEX_HOSTILE) + latex_formula(rng, depth + 1)


def damage(rng: random.Random, text: str) -> str:
    """Sometimes cut, splice or nest a formula; sometimes blow it up to near the length limit."""
    r = rng.random()
    if r < 0.1 and text:
        i = rng.randrange(len(text))
        return text[:i] + text[i + 1:]
    if r < 0.15:
        return "(" * 40 + text + ")" * 40
    if r < 0.2:
        reps = max(1, 9_000 // max(1, len(text) + 3))
        return " + ".join([f"({text})"] * reps)[:10_000]
    if r < 0.23:
        return text + " " + rng.choice(["((((((9**16)**16)**16)**16)**16)**16)", "9" * 5000, "x" * 20_000])
    return text


_SPEC_VALUES = ['"h"', '["h"]', "5", "-3", "0", "2.5", '"1/0"', '"9**16**16"', "1000000000", '"lambda"',
                "true", "{}", '"\\u00e9"', '"a\\nb"', '"\\\\input{/etc/hostname}"', '""', '"../x"',
                '"((((9**16)**16)**16)**16)"', '"h_prev"', '"n"']


def mutate_spec(rng: random.Random, text: str) -> str:
    """One to three random edits of a spec's TOML text."""
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        line = lines[i]
        r = rng.random()
        if r < 0.4 and "=" in line:
            key, _, value = line.partition("=")
            if rng.random() < 0.5 and '"' in value:  # one quoted value inside the line
                a = value.index('"')
                b = value.find('"', a + 1)
                if b > a:
                    value = value[:a] + rng.choice(_SPEC_VALUES) + value[b + 1:]
                lines[i] = key + "=" + value
            else:
                lines[i] = key + "= " + rng.choice(_SPEC_VALUES)
        elif r < 0.55:
            del lines[i]
        elif r < 0.7:
            lines.insert(i, line)
        elif r < 0.8:
            lines.insert(i, rng.choice(["bogus = 1", "unit = 3", "extra = \"x\"", "[stacks]", "tag = 5"]))
        elif line:
            j = rng.randrange(len(line))
            lines[i] = line[:j] + rng.choice("=\"[]{},x_0 \\#'") + line[j + 1:]
    return "\n".join(lines) + "\n"


# the gradient each formula is offered as (without one, a formula with no left side is
# refused before the judgement, which then goes unfuzzed)
QUANTITIES = {"coursera": ["dft", "dc_prev", "da_prev", "dWf", "dbo", "dcct"],
              "graves": ["dz_f", "dc_prev", "dh_prev", "dW_xf", "delta_c"],
              "gru": ["dz_z", "dh_prev", "dW_ir", "db_hn"],
              "elman": ["dz_h", "dh_prev", "dW_hh", "db_ih"],
              "pytorch": ["dz_f", "dc_prev", "dh_prev", "dW_hi", "db_io"]}


def check_formula(preset: str, text: str, syntax: str, quantity: str | None = None):
    """None if the verifier answered or refused with the project's error; else the unexpected exception."""
    from derive.errors import DeriveError
    from derive.verifier.formula import verify

    try:
        verify(preset, quantity, text, syntax=syntax)
    except DeriveError:
        pass
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
        return exc
    return None


def check_spec(text: str, derive_it: bool = True):
    from derive.derivation import derive
    from derive.errors import DeriveError
    from derive.spec.cell import load

    try:
        load("fuzz.toml", text)
        if derive_it:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "fuzz.toml"
                path.write_text(text, "utf-8")
                derive(str(path))
    except DeriveError:
        pass
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


def _spec_texts():
    from derive.derivation import presets, spec_text

    return [spec_text(p)[1] for p in presets()] + [(ROOT / "examples" / "mgu.toml").read_text("utf-8")]


# the slowest case of a batch, by wall time and by CPU time (the process's own, which a loaded
# machine does not inflate): {"wall": (wall, cpu, case), "cpu": (wall, cpu, case)}
_NONE = {"wall": (0.0, 0.0, ""), "cpu": (0.0, 0.0, "")}


def _slower(slowest: dict, wall: float, cpu: float, case: str) -> dict:
    out = dict(slowest)
    if wall > slowest["wall"][0]:
        out["wall"] = (wall, cpu, case)
    if cpu > slowest["cpu"][1]:
        out["cpu"] = (wall, cpu, case)
    return out


def _merge(slowests) -> dict:
    out = _NONE
    for s in slowests:
        out = _slower(out, *s["wall"])
        out = _slower(out, *s["cpu"])
    return out


def _formula_batch(args):
    seed, n = args
    rng = random.Random(seed)
    bad, slowest = [], _NONE
    presets = ["coursera", "graves", "gru", "elman", "pytorch"]
    for preset in presets:  # each process derives its cells once; time verdicts, not that
        for quantity in QUANTITIES[preset]:  # and builds each syntax's reader and each quantity's tables once
            check_formula(preset, "0", "python", quantity)
            check_formula(preset, "0", "latex", quantity)
    for _ in range(n):
        syntax = "latex" if rng.random() < 0.3 else "python"
        text = damage(rng, latex_formula(rng) if syntax == "latex" else formula(rng))
        preset = rng.choice(presets)
        quantity = rng.choice(QUANTITIES[preset])
        t, c = time.perf_counter(), time.process_time()
        exc = check_formula(preset, text, syntax, quantity)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        case = f"{preset} {quantity} {syntax} {len(text)} chars {text[:200]!r}"
        slowest = _slower(slowest, wall, cpu, case)
        if exc is not None:
            bad.append(f"{type(exc).__name__}: {exc} <- {preset} {quantity} {syntax} {text[:200]!r}")
    return bad, slowest


def _spec_batch(args):
    seed, n = args
    rng = random.Random(seed)
    texts = _spec_texts()
    bad, slowest = [], _NONE
    for _ in range(n):
        text = mutate_spec(rng, rng.choice(texts))
        t, c = time.perf_counter(), time.process_time()
        exc = check_spec(text)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        slowest = _slower(slowest, wall, cpu, text[:300])
        if exc is not None:
            bad.append(f"{type(exc).__name__}: {exc}")
    return bad, slowest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--formulas", type=int, default=100_000)
    ap.add_argument("--specs", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--progress", action="store_true", help="print the running figures after each batch")
    args = ap.parse_args(argv)
    import os

    os.environ["LSTM_DERIVE_CACHE"] = "off"
    from multiprocessing import Pool

    results = {}
    for what, total, fn in (("formulas", args.formulas, _formula_batch), ("specs", args.specs, _spec_batch)):
        if not total:
            continue
        jobs = [(args.seed * 1_000_003 + i, min(args.batch, total - i)) for i in range(0, total, args.batch)]
        t = time.time()
        parts, done = [], 0
        with Pool(args.workers) as pool:
            for job, part in zip(jobs, pool.imap(fn, jobs, chunksize=1)):
                parts.append(part)
                done += job[1]
                for b in part[0]:
                    print("   unexpected:", b[:400], flush=True)
                if args.progress:
                    s = _merge(p[1] for p in parts)
                    print(f"  {what}: {done}/{total} in {time.time() - t:.0f} s, load {os.getloadavg()[0]:.1f}, "
                          f"unexpected {sum(len(p) for p, _ in parts)}, slowest wall {s['wall'][0]:.3f} s, "
                          f"slowest CPU {s['cpu'][1]:.3f} s", flush=True)
        bad = [b for p, _ in parts for b in p]
        s = _merge(p[1] for p in parts)
        results[what] = (total, bad, s, time.time() - t)
        print(f"{what}: {total} cases in {time.time() - t:.0f} s (load average at the end "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}); unexpected exceptions: {len(bad)}", flush=True)
        print(f"  slowest by wall time: {s['wall'][0]:.3f} s wall, {s['wall'][1]:.3f} s CPU: {s['wall'][2][:300]!r}")
        print(f"  slowest by CPU time:  {s['cpu'][0]:.3f} s wall, {s['cpu'][1]:.3f} s CPU: {s['cpu'][2][:300]!r}")
        for b in bad[:20]:
            print("  ", b[:400])
    return 1 if any(r[1] for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
