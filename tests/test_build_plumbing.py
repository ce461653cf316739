"""`lstm-derive build` is deterministic and `--check` catches stale files;
the wheel ships the specs and templates and works from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from derive.cli import build
from derive.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent


def test_committed_generated_files_are_current():
    diffs = build.stale(build.render_all(), ROOT / "generated")
    assert not diffs, "generated/ is stale: run `lstm-derive build` and commit\n" + "".join(diffs)[:4000]


def test_check_exits_1_with_a_diff_when_stale_and_0_when_fresh(tmp_path, capsys):
    files = build.render_all(["nicodjimenez"])
    build.write(files, tmp_path)
    listing = tmp_path / "nicodjimenez.txt"
    listing.write_text(listing.read_text() + "tampered\n")
    assert build.stale(files, tmp_path)
    diff = "".join(build.stale(files, tmp_path))
    assert "-tampered" in diff and str(listing) in diff
    build.write(files, tmp_path)
    assert not build.stale(files, tmp_path)


def test_cli_build_check_on_a_stale_folder(tmp_path, capsys):
    assert cli.main(["build", "--check", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "+++ b/" in out.out and "run `lstm-derive build`" in out.err


def test_written_files_are_readable_by_everyone_and_no_temporaries_remain(tmp_path):
    build.write(build.render_all(["lipton"]), tmp_path)
    for path in tmp_path.iterdir():
        assert not path.name.startswith("."), path
        assert path.stat().st_mode & 0o044 == 0o044, oct(path.stat().st_mode)


def test_render_is_byte_identical_in_a_fresh_process():
    code = "import derive.cli.build as b, hashlib, json; print(json.dumps({k: hashlib.sha256(v.encode()).hexdigest() for k, v in b.render_all(['coursera']).items()}, sort_keys=True))"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    a = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, check=True).stdout
    env["PYTHONHASHSEED"] = "456"
    b = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, check=True).stdout
    assert a == b and a.strip()


def test_bad_input_exits_2_with_one_line(capsys):
    assert cli.main(["show", "no_such_cell"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lstm-derive:") and "Traceback" not in err


@pytest.mark.skipif(os.environ.get("DERIVE_SKIP_WHEEL") == "1", reason="DERIVE_SKIP_WHEEL=1")
def test_the_wheel_works_from_any_directory(tmp_path):
    """A non-editable install ships the specs and the templates."""
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = wheel_dir.glob("derive-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import derive, derive.cli.build as b; assert derive.__file__.startswith(%r), derive.__file__; "
            "print(derive.presets()); print(len(b.render_all(['coursera'])))") % str(target)
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "coursera" in out.stdout and "tmva" in out.stdout


def test_a_build_with_nothing_changed_renders_nothing_and_any_change_renders_again(tmp_path, monkeypatch, capsys):
    """The stamp (derive.cli.stamp): a second build of the same inputs into an
    untouched folder says "up to date" without rendering; an edited output file
    or an edited spec makes the build render again."""
    import shutil

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "mgu.toml"
    shutil.copy(ROOT / "examples" / "mgu.toml", spec)
    out = tmp_path / "out"
    args = ["build", "--spec", str(spec), "-o", str(out)]
    assert cli.main(args) == 0
    assert "wrote 4 files" in capsys.readouterr().out
    calls = []
    real = build.render_all
    monkeypatch.setattr(build, "render_all", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert cli.main(args) == 0
    assert capsys.readouterr().out == f"{out.as_posix()}/ is up to date (4 files)\n" and calls == []
    assert cli.main(["build", "--check", "--spec", str(spec), "-o", str(out)]) == 0  # --check always renders
    assert len(calls) == 1
    (out / "mgu.md").write_text("edited", "utf-8")
    assert cli.main(args) == 0
    assert "wrote 1 of 4 files" in capsys.readouterr().out and len(calls) == 2
    assert cli.main(args) == 0 and len(calls) == 2  # stamped again
    spec.write_text(spec.read_text("utf-8") + "\n# a comment\n", "utf-8")
    assert cli.main(args) == 0 and len(calls) == 3  # the spec's text is an input


def test_the_stamp_folder_is_private_or_unused(tmp_path, monkeypatch, capsys):
    """The stamps live in a folder made 0700; one writable by others, or a link, is not
    used (said once on stderr), and a stamp planted there cannot make a build skip."""
    import os
    import shutil
    import stat

    from derive.cli import stamp

    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    spec = tmp_path / "mgu.toml"
    shutil.copy(ROOT / "examples" / "mgu.toml", spec)
    out = tmp_path / "out"
    args = ["build", "--spec", str(spec), "-o", str(out)]
    assert cli.main(args) == 0
    for level in (cache / "lstm-derive", cache / "lstm-derive" / "build"):
        assert stat.S_IMODE(os.lstat(level).st_mode) == 0o700
    capsys.readouterr()
    # the folder made writable by others: not used, said once, and the build renders
    os.chmod(cache / "lstm-derive" / "build", 0o777)
    stamp._SAID.clear()
    calls = []
    real = build.render_all
    monkeypatch.setattr(build, "render_all", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert cli.main(args) == 0 and len(calls) == 1
    err = capsys.readouterr().err
    assert err.count("not using") == 1 and "writable by others" in err
    # a link in the folder's place: not followed
    shutil.rmtree(cache / "lstm-derive")
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    os.symlink(tmp_path / "elsewhere", cache / "lstm-derive")
    stamp._SAID.clear()
    assert cli.main(args) == 0 and len(calls) == 2
    assert "is not a folder" in capsys.readouterr().err and not any((tmp_path / "elsewhere").iterdir())
