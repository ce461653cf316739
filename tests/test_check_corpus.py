"""`lstm-derive check FILE ...` on a corpus of real public implementations, run
exactly as a user runs it: a subprocess, the files as published, no adapter.

The corpus is third-party code and is not part of this repository: it lives in
the folder named by the environment variable DERIVE_CORPUS (default
``../shared/corpus`` beside the repository) with a MANIFEST.toml listing, per
item, its source repository, commit, licence, files and the verdicts of an
independent torch-autograd check (its ``truth.py``), keyed
``<function>.<gradient>``. Without a corpus the tests skip.

The comparison per item: for every function of the truth, a gradient the truth
calls right must be checked right (in an item whose forward works as published),
and a function with a wrong gradient must not be "right"; a function whose
published forward fails (the truth's ``user_forward_failed`` / ``error``) must be
"could not check". Anything never comes out "right" where the truth says wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("DERIVE_CORPUS", ROOT.parent / "shared" / "corpus"))
MANIFEST = CORPUS / "MANIFEST.toml"


def _items() -> list[dict]:
    if not MANIFEST.is_file():
        return []
    import tomllib

    return tomllib.loads(MANIFEST.read_text(encoding="utf-8")).get("item", [])


ITEMS = _items()

# truth key prefix -> the backward the checker reports, per API family
NAMES = {
    "rnn_cell": "rnn_cell_backward", "rnn": "rnn_backward", "lstm_cell": "lstm_cell_backward", "lstm": "lstm_backward",
    "rnn_step": "rnn_step_backward", "lstm_step": "lstm_step_backward",
}


def expected(item: dict) -> dict[str, str]:
    """{backward: right | wrong | could not check | not supported} from the truth table."""
    truth: dict = item.get("truth", {})
    out: dict[str, str] = {}
    if item["family"] == "minchar":
        values = {v for k, v in truth.items() if k.startswith("d")}
        return {"lossFun": "wrong" if "wrong" in values else "right"}
    if item["family"] == "class-based":
        for key, value in truth.items():
            cls = key.split(".")[0]
            if cls in ("h_t(fwd)",) or "." not in key:
                name = "GRU_Cell.backward"
                cls_value = str(value).split(" ")[0]
                out[name] = "wrong" if out.get(name) == "wrong" or cls_value == "wrong" else "right"
                continue
            name = f"{cls}.backward"
            out[name] = "wrong" if out.get(name) == "wrong" or value == "wrong" else "right"
        return out
    if item["family"] == "nicodjimenez":
        name = "LstmNode.top_diff_is"
        published = {k.split(".", 1)[1]: v for k, v in truth.items() if k.startswith("as_published.")}
        if "error" in published:
            return {name: "could not check"}
        if "wrong" in published.values():
            return {name: "wrong"}
        # the truth covers what the node returns; a node without bottom_diff_x returns no dx: incomplete
        return {name: "right" if "bottom_diff_x" in published else "incomplete"}
    failed = {k.split(".")[0] for k in truth if k.endswith("user_forward_failed")}
    for key, value in truth.items():
        fn, _, grad = key.partition(".")
        name = NAMES.get(fn, fn)
        if fn in failed or key.endswith("user_forward_failed"):
            out[fn if fn.endswith("backward") else name] = "could not check"
            continue
        if not isinstance(value, str) or grad in ("NameError", "mutates_dnext_c"):
            continue
        if value == "error":
            out[name] = "could not check"
        elif out.get(name) not in ("wrong", "could not check"):
            out[name] = "wrong" if value == "wrong" else "right"
    return out


@pytest.mark.skipif(not ITEMS, reason=f"no corpus at {CORPUS} (set DERIVE_CORPUS)")
@pytest.mark.parametrize("item", ITEMS, ids=[i["id"] for i in ITEMS])
def test_corpus_item_verdicts_match_torch(item):
    files = [str(CORPUS / item["id"] / f) for f in item["files"]]
    proc = subprocess.run([sys.executable, "-m", "derive", "check", "--json", "--timeout", "60", *files],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    got = {f["backward"]: f["verdict"] for f in report["functions"]}
    want = expected(item)
    if not want:  # an API no row knows: nothing may be called right or wrong
        assert proc.returncode == 2 and not got, report
        return
    for name, verdict in want.items():
        assert got.get(name) == verdict, (name, got.get(name), verdict, report)
    for name, verdict in got.items():  # never a false "right" on code the truth does not cover
        if name not in want:
            assert verdict != "right" or item["family"] == "class-based", (name, report)
