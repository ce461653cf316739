"""Hostile files and formulas (issue 12), through the real command line.

Every spec in tests/hostile/specs/ says the exit status and a fragment of the
message it must give (``# expect-exit:``, ``# expect-message:``); every
formula in tests/hostile/formulas.toml likewise. Each runs in a subprocess
with ``$HOSTILE_MARKER`` naming a file that every payload tries to create:
afterwards the marker does not exist (nothing ran), no traceback was printed,
and a refused build wrote nothing. A spec that is accepted (its hostile text
is only data) has every generated module imported, in a subprocess, with the
marker still absent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "hostile"
SPECS = sorted((CORPUS / "specs").glob("*.toml"))
FORMULAS = tomllib.loads((CORPUS / "formulas.toml").read_text("utf-8"))["case"]


def run(*args, cwd: Path, marker: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HOSTILE_MARKER=str(marker), LSTM_DERIVE_CACHE="off")
    return subprocess.run([sys.executable, "-m", "derive", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, timeout=timeout)


def expectation(path: Path) -> tuple[int, str]:
    head = path.read_bytes().split(b"\n", 2)
    return int(head[0].split(b":")[1]), head[1].split(b":", 1)[1].strip().decode()


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def import_all(modules: list[Path], marker: Path) -> None:
    for module in modules:
        code = ("import importlib.util, sys\n"
                f"spec = importlib.util.spec_from_file_location('hostile_module', {str(module)!r})\n"
                "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
                "assert m.__doc__, 'the docstring is gone'\n")
        proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, HOSTILE_MARKER=str(marker)),
                              capture_output=True, timeout=120)
        assert proc.returncode == 0, (module, proc.stderr.decode()[-2000:])
        assert not marker.exists(), f"importing {module.name} ran the spec's payload"


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_hostile_spec_through_build(spec, tmp_path):
    code, message = expectation(spec)
    marker = tmp_path / "marker"
    out = tmp_path / "out"
    before = files_under(tmp_path)
    proc = run("build", "--spec", spec, "--out", out, cwd=tmp_path, marker=marker)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == code, err
    assert "Traceback" not in err and message in err
    assert not marker.exists()
    if code:
        assert len(err.strip().splitlines()) <= 3, err  # one message (and at most a caret under the text)
        assert files_under(tmp_path) == before, "a refused build wrote something"
        return
    written = files_under(tmp_path) - before
    assert written and all(p == out or p.parent == out for p in written), written  # nothing outside --out
    import_all(sorted(out.glob("*.py")), marker)
    for text in (out / "mgu.tex").read_text("utf-8"), (out / "mgu.md").read_text("utf-8"):
        assert r"\input{/etc/hostname}" not in text and "<script>" not in text


@pytest.mark.parametrize("case", FORMULAS, ids=[c["formula"][:30] for c in FORMULAS])
def test_hostile_formula_through_verify(case, tmp_path):
    marker = tmp_path / "marker"
    proc = run("verify", *case["args"], case["formula"], cwd=tmp_path, marker=marker, timeout=120)
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode == case["exit"], text
    assert case["message"] in text and "Traceback" not in text
    assert not marker.exists() and not (tmp_path / "hostile_marker").exists()
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("filename", ["evil\nimport os; os.open(os.environ['HOSTILE_MARKER'], 65)\n#.toml",
                                      "50% off -->\\input{x}.toml", 'quote""".toml'])
def test_the_spec_file_name_is_only_a_comment(filename, tmp_path):
    """The file's own name goes into `# Regenerate with:` (Python), `%` (TeX) and `<!-- -->` (Markdown)."""
    marker = tmp_path / "marker"
    spec = tmp_path / filename
    spec.write_text((ROOT / "examples" / "mgu.toml").read_text("utf-8"), "utf-8")
    out = tmp_path / "module.py"
    proc = run("numpy", spec, "-o", out, cwd=tmp_path, marker=marker)
    assert proc.returncode == 0, proc.stderr.decode()
    header = out.read_text("utf-8").splitlines()[1]
    assert header.startswith("# Regenerate with: lstm-derive ") and "?" in header
    import_all([out], marker)
    proc = run("markdown", spec, cwd=tmp_path, marker=marker)
    comment = next(line for line in proc.stdout.decode().splitlines() if "Regenerate" in line)
    assert comment.count("-->") == 1 and comment.endswith("-->")


def test_numpy_dash_o_writes_an_injected_title_as_data(tmp_path):
    marker = tmp_path / "marker"
    out = tmp_path / "cell.py"
    proc = run("numpy", CORPUS / "specs" / "title_docstring_one_line.toml", "-o", out, cwd=tmp_path, marker=marker)
    assert proc.returncode == 0, proc.stderr.decode()
    import_all([out], marker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.py"]


# ---------------------------------------------------------------------------
# --out and all-or-nothing writing


def test_out_that_is_a_file_or_a_directory_for_o(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "file").write_text("keep")
    proc = run("build", "--spec", ROOT / "examples" / "mgu.toml", "--out", tmp_path / "file", cwd=tmp_path, marker=marker)
    assert proc.returncode == 2 and b"is a file" in proc.stderr and b"Traceback" not in proc.stderr
    assert (tmp_path / "file").read_text() == "keep"
    proc = run("numpy", "elman", "-o", tmp_path, cwd=tmp_path, marker=marker)
    assert proc.returncode == 2 and b"is a folder" in proc.stderr


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    proc = run("build", "--spec", ROOT / "examples" / "mgu.toml", "--out", ro, cwd=tmp_path, marker=tmp_path / "m")
    assert proc.returncode == 2 and b"not writable" in proc.stderr


def _old_set(folder: Path) -> dict[str, str]:
    folder.mkdir()
    files = {name: f"old {name}\n" for name in ("a.md", "a.py", "a.tex", "a.txt")}
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


def test_an_error_on_the_third_file_leaves_the_old_set(tmp_path, monkeypatch):
    from derive.cli import files as files_mod

    folder = tmp_path / "out"
    old = _old_set(folder)

    def fail_third(i, name):
        if i == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_mod, "_after_stage", fail_third)
    new = {name: f"new {name}\n" for name in old}
    with pytest.raises(files_mod.OutputError, match="nothing was changed"):
        files_mod.write_files(new, folder)
    assert {p.name: p.read_text() for p in folder.iterdir()} == old  # the old set, no temporary file
    monkeypatch.setattr(files_mod, "_after_stage", None)
    files_mod.write_files(new, folder)
    assert {p.name: p.read_text() for p in folder.iterdir()} == new


def test_a_name_outside_the_folder_is_never_written(tmp_path):
    from derive.cli.files import OutputError, write_files

    folder = tmp_path / "out"
    for name in ("../x.py", "/etc/x.py", "", ".", "a/b.py", "x\n.py", ".hidden"):
        with pytest.raises(OutputError):
            write_files({"ok.py": "ok", name: "bad"}, folder)
    assert not folder.exists() or list(folder.iterdir()) == []
    (tmp_path / "target").write_text("keep")
    folder.mkdir(exist_ok=True)
    (folder / "link.py").symlink_to(tmp_path / "target")
    with pytest.raises(OutputError, match="refusing"):
        write_files({"link.py": "bad"}, folder)
    assert (tmp_path / "target").read_text() == "keep"


_SLOW_WRITER = """
import signal, sys, time
from pathlib import Path
from derive.cli import files
# SIGINT as a terminal delivers it: a background job of a script (this test under
# `cmd &`, CI runners) inherits SIGINT ignored, and Python then keeps it ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
def pause(i, name):
    if i == 2:
        print("staged", flush=True)
        time.sleep(60)
files._after_stage = pause
files.write_files({n: "new " + n for n in ("a.md", "a.py", "a.tex", "a.txt")}, Path(sys.argv[1]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_writing_leaves_the_old_set_and_no_temporary_file(sig, tmp_path):
    folder = tmp_path / "out"
    old = _old_set(folder)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout.readline() == b"staged\n"
    assert len(list(folder.iterdir())) > len(old)  # the temporaries are there while it writes
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert {p.name: p.read_text() for p in folder.iterdir()} == old


# ---------------------------------------------------------------------------
# pdflatex


@pytest.mark.skipif(not __import__("shutil").which("pdflatex"), reason="pdflatex is not installed")
def test_pdflatex_runs_paranoid_and_without_shell_escape(tmp_path):
    """A .tex that slipped past the whitelist still cannot read /etc or run a shell."""
    from derive.writeup.pdf import compile_pdf

    marker = tmp_path / "shell_ran"
    tex = tmp_path / "evil.tex"
    tex.write_text("\\documentclass{article}\\begin{document}\n"
                   f"\\immediate\\write18{{touch {marker}}}\n"
                   "\\input{/etc/hostname}\n\\end{document}\n")
    with pytest.raises(RuntimeError):
        compile_pdf(tex, runs=1, timeout=120)
    assert not marker.exists()
    tex.write_text("\\documentclass{article}\\begin{document}\n"
                   f"\\immediate\\write18{{touch {marker}}}x\n\\end{{document}}\n")
    compile_pdf(tex, runs=1, timeout=120)
    assert not marker.exists()
