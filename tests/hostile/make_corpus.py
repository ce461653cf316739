"""Writes the hostile spec corpus (specs/*.toml) from the MGU example.

Each file starts with ``# expect-exit: N`` and ``# expect-message: TEXT`` lines
that tests/test_hostile.py checks after running the real CLI on it. Run
``python tests/hostile/make_corpus.py`` to rewrite the files after editing
this list; the files are committed, so the corpus can be read as is.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = (HERE.parent.parent / "examples" / "mgu.toml").read_text("utf-8")
BASE = BASE[BASE.index('name = "mgu"'):]

# The payload every injection carries: it creates the file $HOSTILE_MARKER.
PY = "__import__('os').open(__import__('os').environ['HOSTILE_MARKER'], 65)"


def sub(old: str, new: str, base: str = BASE) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


def toml_str(text: str) -> str:
    """A TOML basic string holding ``text`` exactly."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


TITLE = 'title = "Minimal Gated Unit (Zhou et al. 2016)"'
H_LATEX = "h       = { latex = 'h_t', meaning = \"hidden state\" }"
CASES: dict[str, tuple[int, str, str]] = {
    # -- text that reaches generated files: accepted as data (exit 0), never run
    "title_docstring_one_line": (0, "", sub(TITLE, "title = " + toml_str(f'x"""; {PY}; """'))),
    "source_docstring_backslash": (0, "", sub('source = "', 'source = ' + toml_str('\\N{oops} \\" """' + PY + '#')[:-1])),
    "meaning_docstring": (0, "", sub(H_LATEX, "h = { latex = 'h_t', meaning = " + toml_str(f'"""; {PY} #"') + " }")),
    "title_tex_and_markdown": (0, "", sub(TITLE, "title = " + toml_str(r"\input{/etc/hostname} $x$ <script>alert(1)</script> -->"))),
    # -- text with a line break: refused
    "title_newline": (2, "not printable", sub(TITLE, "title = " + toml_str(f'x"""\n{PY}\n"""'))),
    "meaning_newline": (2, "not printable", sub(H_LATEX, "h = { latex = 'h_t', meaning = " + toml_str(f"a\n{PY}") + " }")),
    "tag_quote": (2, "a tag is a short label", sub('tag = "8c"', "tag = " + toml_str(f'8c"""{PY}'))),
    "equation_comment": (2, "no comments", sub('"h = (1 - f) * h_prev + f * h_tilde"', toml_str(f'h = (1 - f) * h_prev + f * h_tilde # """{PY}'))),
    "equation_newline": (2, "", sub('"h = (1 - f) * h_prev + f * h_tilde"', toml_str(f"h = (1 - f) * h_prev + f * h_tilde\n{PY}"))),
    # -- TeX: only whitelisted math commands
    "latex_input": (2, r"`\input`", sub("latex = 'h_t'", r"latex = '\input{/etc/hostname}'")),
    "latex_include": (2, r"`\include`", sub("latex = 'h_t'", r"latex = '\include{x}'")),
    "latex_immediate": (2, r"`\immediate`", sub("latex = 'h_t'", r"latex = '\immediate\write18{touch x}'")),
    "latex_write18": (2, r"`\write`", sub("latex = 'h_t'", r"latex = 'h\write18{touch x}'")),
    "latex_openin": (2, r"`\openin`", sub("latex = 'h_t'", r"latex = '\openin5=/etc/passwd'")),
    "latex_read": (2, r"`\read`", sub("latex = 'h_t'", r"latex = 'h\read5to\x'")),
    "latex_def": (2, r"`\def`", sub("latex = 'h_t'", r"latex = '\def\h{x}h'")),
    "latex_catcode": (2, r"`\catcode`", sub("latex = 'h_t'", r"latex = '\catcode`\^^M=13 h'")),
    "latex_csname": (2, r"`\csname`", sub("latex = 'h_t'", r"latex = '\csname input\endcsname{x}'")),
    "latex_tag": (2, r"`\tag`", sub("latex = 'h_t'", r"latex = 'h_t \tag{1}'")),
    "latex_label": (2, r"`\label`", sub("latex = 'h_t'", r"latex = 'h_t\label{eq:x}'")),
    "latex_caret_code": (2, "`^^`", sub("latex = 'h_t'", r"latex = '^^5cinput{/etc/hostname}'")),
    "latex_dollar": (2, "`$`", sub("latex = 'h_t'", r"latex = 'h$ \input x $'")),
    "latex_percent": (2, "`%`", sub("latex = 'h_t'", r"latex = 'h_t % comment'")),
    "latex_unbalanced": (2, "unbalanced", sub("latex = 'h_t'", r"latex = 'h_t}}'")),
    "latex_environment": (2, "environment", sub("latex = 'h_t'", r"latex = '\begin{filecontents}{x}'")),
    "latex_html": (2, "`<`", sub("latex = 'h_t'", "latex = 'h<script>alert(1)</script>'")),
    "latex_non_ascii": (2, "not printable", sub("latex = 'h_t'", "latex = 'h\u200b_t'")),
    "adjoint_latex_input": (2, r"`\input`", BASE + "\n[adjoint_latex]\ndh = '\\input{/etc/hostname}'\n"),
    # -- names
    "name_traversal": (2, "is not a name", sub('name = "mgu"', 'name = "/../../../elsewhere/x"')),
    "name_empty": (2, "is not a name", sub('name = "mgu"', 'name = ""')),
    "name_dot": (2, "is not a name", sub('name = "mgu"', 'name = "."')),
    "name_newline": (2, "is not a name", sub('name = "mgu"', 'name = "a\\nb"')),
    "name_sitecustomize_path": (2, "is not a name", sub('name = "mgu"', 'name = "../sitecustomize"')),
    "name_keyword": (2, "keyword", sub('name = "mgu"', 'name = "lambda"')),
    "name_list": (2, "must be a name", sub('name = "mgu"', 'name = ["mgu"]')),
    "symbol_keyword": (2, "keyword", sub("h_tilde = tanh", "lambda = tanh", sub("f * h_tilde", "f * lambda", sub("h_tilde = { latex", "lambda = { latex")))),
    "symbol_fullwidth": (2, "is not a name", sub("h_tilde = tanh", "\uff48_tilde = tanh", sub("f * h_tilde", "f * \uff48_tilde", sub("h_tilde = { latex", '"\uff48_tilde" = { latex')))),
    "equation_fullwidth": (2, "not ASCII", sub("f * h_tilde", "f * \uff48_tilde")),
    "symbol_reserved": (2, "uses itself", sub("h_tilde = tanh", "np = tanh", sub("f * h_tilde", "f * np", sub("h_tilde = { latex", "np = { latex")))),
    "grad_not_a_name": (2, "is not a name", sub('grad = "dh"', 'grad = "d h"')),
    # -- type confusion
    "out_list": (2, "must be a name", sub('out = "h"', 'out = ["h"]')),
    "batch_list": (2, "`batch` must be the name of a dimension", sub('batch = "B"', 'batch = ["B"]')),
    "loss_on_list": (2, "must be a name", sub('on = "h"', 'on = ["h"]')),
    "stacks_integer": (2, "[stacks] must be a table", sub('layout = "columns"', 'layout = "columns"\nstacks = 5')),
    "stacks_of_tables": (2, "[stacks] `w` must list declared symbols", BASE + "\n[stacks]\nw = [{ a = 1 }]\n"),
    "title_integer": (2, "must be text", sub(TITLE, "title = 5")),
    "meaning_integer": (2, "must be text", sub(H_LATEX, "h = { latex = 'h_t', meaning = 3 }")),
    "latex_table": (2, "must be text", sub("latex = 'h_t'", "latex = { a = 1 }")),
    "role_integer": (2, "role", sub('role = "input"', "role = 1")),
    "forward_table": (2, "forward", sub("forward = [", "forward = 7\nold_forward = [")),
    "dims_not_table": (2, "`dims` must be a dict", sub('[dims]\nn = "input size"\nm = "hidden units"\nB = "batch size"\n', "")
                       .replace('batch = "B"', 'batch = "B"\ndims = 3')),
    "loss_unknown_key": (2, "[loss]: unknown key `extrnal`", sub('external = "dl_dh"', 'external = "dl_dh"\nextrnal = "x"')),
    "recurrent_unknown_key": (2, "unknown key `grd`", sub('grad = "dh"', 'grad = "dh"\ngrd = "x"')),
    "loss_unit_bool": (2, "`unit` applies to `squared_error` only", sub('external = "dl_dh"', 'external = "dl_dh"\nunit = true')),
    "equation_unknown_key": (2, "unknown key `tga`", sub('tag = "8c"', 'tag = "8c", tga = "x"')),
    # -- shapes and sizes
    "dim_negative": (2, "must be an integer from 1", sub('shape = ["m", 1], latex = \'b_f\'', 'shape = ["m", -3], latex = \'b_f\'')),
    "dim_zero": (2, "must be an integer from 1", sub('shape = ["m", 1], latex = \'b_f\'', 'shape = ["m", 0], latex = \'b_f\'')),
    "dim_float": (2, "must be a positive integer or a dimension", sub('shape = ["m", 1], latex = \'b_f\'', 'shape = ["m", 2.5], latex = \'b_f\'')),
    "dim_division": (2, "must be a dimension", sub('shape = ["m", 1], latex = \'b_f\'', 'shape = ["m", "1/0"], latex = \'b_f\'')),
    "dim_huge": (2, "must be an integer from 1", sub('shape = ["m", 1], latex = \'b_f\'', 'shape = ["m", 1000000000], latex = \'b_f\'')),
    "dim_huge_text": (2, "must be a dimension", sub('shape = ["m", 1], latex = \'b_f\'', 'shape = ["m", "10**9"], latex = \'b_f\'')),
    "dim_tower": (2, "", sub('shape = ["m", 1], latex = \'b_f\'', 'shape = ["m", "9**16**16"], latex = \'b_f\'')),
    "dim_nested_powers": (2, "the limit is", sub('shape = ["m", 1], latex = \'b_f\'', 'shape = ["m", "((((9**16)**16)**16)**16)"], latex = \'b_f\'')),
    "dim_negative_text": (2, "must be a dimension", sub('shape = ["m", "m + n"]', 'shape = ["m", "m - n"]')),
    "power_tower_in_equation": (2, "the limit is", sub("(1 - f) * h_prev", "(1 - f) * h_prev * ((((((9**16)**16)**16)**16)**16)**16)")),
    "constant_digits": (2, "", sub("(1 - f) * h_prev", "(1 - f) * h_prev * " + "9" * 5000)),
    "too_many_equations": (2, "MAX_EQUATIONS", sub('{ eq = "h = (1 - f) * h_prev + f * h_tilde", tag = "8c" },',
                                                   "\n".join(f'"v{i} = tanh(v{i - 1})",' if i else '"v0 = tanh(h_tilde)",' for i in range(150))
                                                   + '\n{ eq = "h = (1 - f) * h_prev + f * tanh(v149)", tag = "8c" },')),
    "too_many_bytes": (2, "MAX_BYTES", BASE + "\n# " + "x" * 70_000 + "\n"),
    # -- not a spec at all
    "not_toml": (2, "not valid TOML", "name = \n"),
    "not_utf8": (2, "not UTF-8", None),
}


def main() -> None:
    out = HERE / "specs"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.toml"):
        old.unlink()
    for name, (code, message, text) in CASES.items():
        head = f"# expect-exit: {code}\n# expect-message: {message}\n".encode()
        body = text.encode("utf-8") if text is not None else BASE.encode("utf-8").replace(b"hidden", b"hidd\xff\xfen")
        (out / f"{name}.toml").write_bytes(head + body)


if __name__ == "__main__":
    main()
