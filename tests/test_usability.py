"""A learner's day with the tool (issue 16): the small promises the docs and the
command line make, each checked as a user meets it."""

from __future__ import annotations

import numpy as np

import derive
from derive.numeric import evaluate


def test_evaluate_run_keys_are_the_ones_its_docstring_names():
    d = derive.derive("coursera")
    T = 3
    seq = evaluate.random_sequence(d, {"n_x": 2, "n_a": 3, "n_y": 2, "m": 4}, T, np.random.default_rng(0))
    _, grads = evaluate.run(d, seq, truncate=2)
    cell = d.cell
    expected = {d.gradient_name(p) for p in cell.names("param")}
    expected |= {d.gradient_name(s) for s in cell.names("state")}
    expected |= {(d.gradient_name(x), t) for x in cell.names("input") for t in range(T)}
    assert set(grads) == expected
    assert {"dWf", "da_prev", "dc_prev", ("dxt", 0)} <= set(grads)
    for word in ('"dWf"', '"da_prev"', '("dxt", t)', "random_sequence", "Sequence("):
        assert word in evaluate.run.__doc__


def test_repr_latex_has_no_tautology():
    """No `x = x` row: the course's concat is displayed as the stacked vector it is."""
    for name in derive.presets():
        tex = derive.derive(name)._repr_latex_()
        body = tex.removeprefix("$$\\begin{aligned}").removesuffix("\\end{aligned}$$")
        for row in body.split(" \\\\ "):
            if "&=" in row:
                lhs, rhs = row.split(" &= ", 1)
                assert lhs != rhs, (name, row)
    assert derive.derive("coursera")._repr_latex_().startswith("$$\\begin{aligned}\\Gamma_f^{\\langle t \\rangle} &=")


# --------------------------------------------------------------------------- the command line

import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from derive.cli import build  # noqa: E402
from derive.cli.main import main as cli_main, parser  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MGU = ROOT / "examples" / "mgu.toml"


def run(capsys, *argv):
    code = cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def help_text(*argv) -> str:
    return parser(list(argv))._subparsers._group_actions[0].choices[argv[0]].format_help()


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == "lstm-derive 0.1.0"


@pytest.mark.parametrize("command", ["show", "numpy", "latex", "markdown", "verify", "check"])
def test_the_cell_argument_has_one_name(command):
    text = help_text(command)
    assert "CELL" in text.split("\n\n")[0], text
    assert "PRESET" not in text and "preset name (see `lstm-derive presets`) or spec file" in " ".join(text.split())


@pytest.mark.parametrize("command", ["build", "numpy", "latex", "markdown"])
def test_output_is_dash_o_or_dash_dash_output(command):
    text = help_text(command)
    assert "-o" in text and "--output" in text and "--out " not in text and "--out," not in text


@pytest.mark.parametrize("command", ["verify", "check", "build"])
def test_spec_is_a_spec_file_everywhere(command):
    assert "--spec FILE" in help_text(command)


@pytest.mark.parametrize("command", ["build", "presets"])
def test_build_and_presets_have_descriptions(command):
    sub = parser([command])._subparsers._group_actions[0].choices[command]
    assert sub.description and len(sub.description) > 40


def test_build_writes_only_what_changed_and_says_up_to_date(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(MGU, "mgu.toml")
    code, out, err = run(capsys, "build", "--spec", "mgu.toml", "-o", "mine")
    assert code == 0 and out == "wrote 4 files to mine/\n" and err == ""  # no progress off a terminal
    stamps = {p.name: p.stat().st_mtime_ns for p in Path("mine").iterdir()}
    code, out, _ = run(capsys, "build", "--spec", "mgu.toml", "--out", "mine")  # the old spelling
    assert code == 0 and out == "mine/ is up to date (4 files)\n"
    assert {p.name: p.stat().st_mtime_ns for p in Path("mine").iterdir()} == stamps  # nothing rewritten
    Path("mine/mgu.md").write_text("edited", "utf-8")
    code, out, _ = run(capsys, "build", "--spec", "mgu.toml", "-o", "mine")
    assert code == 0 and out == "wrote 1 of 4 files to mine/ (the others were up to date)\n"
    assert Path("mine/mgu.py").stat().st_mtime_ns == stamps["mgu.py"]


def test_build_shows_progress_on_a_terminal_only(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(MGU, "mgu.toml")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, out, err = run(capsys, "build", "--spec", "mgu.toml", "-o", "mine")
    assert code == 0 and "built 1/1: mgu" in err and err.endswith("\n")


def test_build_in_parallel_gives_the_same_files():
    names = ["elman", "nicodjimenez"]
    seen = []
    assert build.render_all(names, jobs=2, progress=lambda done, total, name: seen.append((done, total))) == \
        build.render_all(names, jobs=1)
    assert seen == [(1, 2), (2, 2)]


def test_build_check_outside_a_checkout_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "build", "--check")
    assert code == 2 and out == ""
    assert "no generated/ here" in err and len(err.splitlines()) == 1
    assert not Path("generated").exists()


def test_regenerate_lines_are_commands_that_work_from_where_the_user_ran_them(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("cells").mkdir()
    shutil.copy(MGU, "cells/mgu.toml")
    assert run(capsys, "numpy", "cells/mgu.toml", "-o", "mgu_module.py")[0] == 0
    first = Path("mgu_module.py").read_text("utf-8")
    line = first.splitlines()[1]
    assert line.startswith("# Regenerate with: lstm-derive numpy cells/mgu.toml -o mgu_module.py "), line
    assert str(tmp_path) not in first
    Path("mgu_module.py").unlink()
    argv = line.removeprefix("# Regenerate with: lstm-derive ").split("   ")[0].split()
    assert run(capsys, *argv)[0] == 0
    assert Path("mgu_module.py").read_text("utf-8") == first
    # build's own header, from absolute paths: relative to where build ran, no path of this machine
    assert run(capsys, "build", "--spec", tmp_path / "cells" / "mgu.toml", "-o", tmp_path / "out")[0] == 0
    text = Path("out/mgu.txt").read_text("utf-8")
    assert "# Regenerate with: lstm-derive build --spec cells/mgu.toml -o out\n" in text
    assert str(tmp_path) not in text


def test_show_prints_no_generated_file_banner(capsys):
    code, out, _ = run(capsys, "show", "elman")
    assert code == 0 and "DO NOT EDIT" not in out and "Regenerate" not in out
    assert out.startswith("# Elman") or out.startswith("# ")


def test_spec_errors_show_the_users_spelling(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MGU.read_text("utf-8").replace("W_h @ concat(f * h_prev, x)", "W_h @ concat(f * h_prev)"), "utf-8")
    code, _, err = run(capsys, "show", bad)
    assert code == 2 and "concat(f*h_prev)" in err and "concat(0" not in err


def test_did_you_mean_reads_as_a_sentence(capsys):
    code, _, err = run(capsys, "show", "courser")
    assert code == 2
    assert "did you mean `coursera` or `coursera_rnn`? (the presets are cifg, " in err and "?;" not in err


def test_check_suggests_a_misspelt_function_name(capsys, tmp_path):
    shutil.copy(ROOT / "generated" / "coursera.py", tmp_path / "mine.py")
    code, _, err = run(capsys, "check", "coursera", f"{tmp_path / 'mine.py'}:lstm_cell_backwards")
    assert code == 2 and "has no `lstm_cell_backwards`; did you mean `lstm_cell_backward`" in err


def test_check_hints_at_sequence_when_a_step_call_fails(capsys, tmp_path):
    (tmp_path / "seq.py").write_text(
        "def backward(dh, h_prev, x, W_f, W_h, f, h_tilde):\n"
        "    out = 0\n"
        "    for t in range(x.shape[0]):\n"
        "        out = out + W_f @ x[t]\n"
        "    return {'dW_f': out}\n", "utf-8")
    code, out, _ = run(capsys, "check", "--spec", MGU, f"{tmp_path / 'seq.py'}:backward")
    assert code == 2 and "raised ValueError" in out and "--sequence" in out



def test_an_error_in_a_build_worker_is_one_clear_message(monkeypatch):
    from derive.errors import DeriveError, SpecError

    def broken(name, out):
        raise SpecError(f"{name}.toml", "broken", "x = y")

    monkeypatch.setattr(build, "render_one", broken)  # the forked workers inherit it
    with pytest.raises(DeriveError, match=r"^(elman|gru)\.toml, equation `x = y`: broken$"):
        build.render_all(["elman", "gru"], jobs=2)


def test_build_jobs_must_be_positive(capsys):
    code, out, err = run(capsys, "build", "-j", "0")
    assert code == 2 and "--jobs must be 1 or more" in err
