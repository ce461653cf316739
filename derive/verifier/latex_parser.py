r"""The grammar of the LaTeX reader: a recursive-descent parser over normalised tokens.

``_Parser(reader, tokens, text, check_shapes)`` reads one expression against the
name table of a :class:`~derive.verifier.latex_reader.LatexReader` (passed in,
never imported: the reader builds the parser). It decides what juxtaposition
means from the shapes (a matrix product where they make one, else elementwise),
reads functions, sums over steps or the batch, fractions of differentials,
transposes, slices and concatenations, and raises ``LatexError`` with the
column of the fault. See :mod:`derive.verifier.latex_reader` for the language.
"""

from __future__ import annotations


import sympy as sp

from derive.spec import functions, ops
from derive.spec.shapes import ShapeError, fmt_shape
from derive.spec.expr import MAX_DEPTH as MAX_OPERANDS, MAX_EXPONENT, bounded_power
from derive.verifier.latex_tokens import LatexError, Tok, _FUNCTION_TARGETS, _MATRICES, _NEXT_MARKERS, _T, _TIME_MARKERS, _TRANSPOSE, _split, _t, keys, tokens_of

_ELEMENTWISE_OPS = {("chr", "*"), ("cmd", "\\odot"), ("cmd", "\\circ")}


_DOT_OPS = {("cmd", "\\cdot"), ("cmd", "\\times")}


_DIV_OPS = {("chr", "/"), ("cmd", "\\div")}


_OUTER_OPS = {("cmd", "\\otimes")}


_BINARY = _ELEMENTWISE_OPS | _DOT_OPS | _DIV_OPS | _OUTER_OPS


_STOP = {("chr", c) for c in "+-=,;&)]|:"} | _BINARY | {("cmd", "\\right|"), ("cmd", "\\\\")}


# The functions by their LaTeX commands (\\sigma, \\max) and by the words a formula spells out
# (``sigmoid``, ``relu``; \\operatorname{relu} reads as the word): the rows of derive.spec.functions.
_FUNCTION_CMDS = {cmd: row.function for row in functions.FUNCTIONS.values() for cmd in row.latex_read
                  if cmd.startswith("\\") and cmd[1:].isalpha()}


_FUNCTION_WORDS = {**{w: row.function for row in functions.FUNCTIONS.values() for w in row.words}, "softmax": "softmax"}
_FUNCTION_WORDS_LONGEST_FIRST = sorted(_FUNCTION_WORDS, key=len, reverse=True)


_LOSS = [keys(tokens_of(s)) for s in ("L", "J", "E", r"\ell", "l", r"\mathcal{L}", r"\mathcal{J}", "L(t)", "l(t)")]


_D = {("chr", "d"), ("cmd", "\\partial")}


class _Parser:
    def __init__(self, reader, toks: list[Tok], text: str, check_shapes: bool, exclude=()):
        self.r = reader
        self.toks = toks
        self.text = text
        self.i = 0
        self.check = check_shapes
        self.exclude = set(exclude)
        self.memo: dict = {}

    # -- helpers ----------------------------------------------------------------
    def fail(self, message: str, tok: Tok | None = None) -> LatexError:
        if tok is None and self.i < len(self.toks):
            tok = self.toks[self.i]
        col = tok.start if tok is not None else len(self.text)
        return LatexError(message, self.text, col)

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, kind: str, value=None, k: int = 0) -> bool:
        t = self.peek(k)
        return t is not None and t.kind == kind and (value is None or t.value == value)

    def take(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect_end(self) -> None:
        if self.i < len(self.toks):
            t = self.toks[self.i]
            raise self.fail(f"cannot read `{self.text[t.start:t.end]}` here", t)

    def sub(self, toks) -> "_Parser":
        p = _Parser(self.r, list(toks), self.text, self.check, self.exclude)
        p.memo = self.memo
        return p

    def shape(self, e, tok=None):
        from derive.spec.shapes import shape_of

        try:
            return shape_of(e, self.r.shapes, self.memo)
        except ShapeError as exc:
            if self.check:
                from derive.spec.shapes import FormulaShapeError

                raise FormulaShapeError(str(exc), self.text, tok.start if tok is not None else None) from None
            return None

    # -- grammar ------------------------------------------------------------------
    def expr(self) -> sp.Expr:
        sign = None
        if self.at("chr", "-") or self.at("chr", "+"):
            sign = self.take().value
        value = self.term()
        if sign == "-":
            value = -value
        if not (self.at("chr", "+") or self.at("chr", "-")):
            return value
        # A long sum is built once, its shape broadcast term by term: adding and
        # checking the whole sum at every `+` is quadratic work.
        terms, acc = [value], self.shape(value, None)
        while self.at("chr", "+") or self.at("chr", "-"):
            op = self.take()
            if len(terms) >= MAX_OPERANDS:
                raise self.fail(f"more than {MAX_OPERANDS} terms in one sum (the limit is {MAX_OPERANDS}, "
                                "as for a Python formula)", op)
            rhs = self.term()
            terms.append(rhs if op.value == "+" else -rhs)
            acc = self._broadcast(acc, terms, sp.Add, op)
        value = sp.Add(*terms)
        self.shape(value, op)
        return value

    def _broadcast(self, acc, parts, combine, op):
        """The shape of ``combine(*parts)`` from that of all but the last part."""
        from derive.spec.shapes import ShapeError, broadcast

        last = self.shape(parts[-1], op)
        if acc is None or last is None:
            return self.shape(combine(*parts), op)
        try:
            return broadcast(acc, last, "")
        except ShapeError:
            # raises the message that points at `op`, or gives the shape of what SymPy
            # folded the parts to (`x \odot 0 a` is 0, whatever the shapes)
            return self.shape(combine(*parts), op)

    def term(self) -> sp.Expr:
        value = self.juxt()
        factors: list[sp.Expr] = []  # a run of elementwise products, multiplied once
        acc = None
        count = 0
        while self.peek() is not None and self.peek().key in _BINARY:
            op = self.take()
            count += 1
            if count >= MAX_OPERANDS:
                raise self.fail(f"more than {MAX_OPERANDS} factors in one product (the limit is {MAX_OPERANDS})", op)
            rhs = self.juxt()
            if op.key in _ELEMENTWISE_OPS:
                if not factors:
                    factors, acc = [value], self.shape(value, op)
                factors.append(rhs)
                acc = self._broadcast(acc, factors, sp.Mul, op)
                continue
            if factors:
                value, factors = sp.Mul(*factors), []
            if op.key in _DIV_OPS:
                value = value / rhs
            elif op.key in _OUTER_OPS:
                value = ops.outer(value, rhs)
            else:
                value = self.product(value, rhs, op)
            self.shape(value, op)
        if factors:
            value = sp.Mul(*factors)
            self.shape(value, None)
        return value

    def juxt(self) -> sp.Expr:
        if self.at("chr", "-"):
            self.take()
            return -self.juxt()
        if self.at("chr", "+"):
            self.take()
            return self.juxt()
        if self.peek() is None:
            raise self.fail("the formula ends too early")
        value = self.postfix()
        count = 0
        while self.peek() is not None and self.peek().key not in _STOP:
            tok = self.peek()
            count += 1
            if count >= MAX_OPERANDS:
                raise self.fail(f"more than {MAX_OPERANDS} factors in one product (the limit is {MAX_OPERANDS})", tok)
            rhs = self.postfix()
            value = self.product(value, rhs, tok)
        return value

    def product(self, a: sp.Expr, b: sp.Expr, tok) -> sp.Expr:
        """Juxtaposition (and \\cdot, \\times): the matrix product when the shapes
        make one, else the elementwise product."""
        from derive.spec.shapes import broadcast, same_dim

        sa, sb = self.shape(a, tok), self.shape(b, tok)
        if sa is None or sb is None:
            return ops.matmul(a, b)
        if not sa or not sb:
            return a * b
        if len(sa) == 2 and len(sb) in (1, 2) and same_dim(sa[1], sb[0]):
            out = ops.matmul(a, b)
            self.shape(out, tok)
            return out
        if len(sa) == 1 and len(sb) == 2 and same_dim(sa[0], sb[0]):
            return ops.matmul(a, b)
        try:
            broadcast(sa, sb, "")
            return a * b
        except ShapeError:
            pass
        if self.check:
            from derive.spec.shapes import FormulaShapeError

            raise FormulaShapeError(
                f"`{self.snippet(tok)}`: a product of arrays of shapes {fmt_shape(sa)} and {fmt_shape(sb)}, which "
                "neither multiply as matrices nor elementwise", self.text, tok.start if tok is not None else None)
        return ops.matmul(a, b)

    def snippet(self, tok) -> str:
        return self.text[max(0, tok.start - 20): tok.end + 20].strip() if tok is not None else ""

    def postfix(self) -> sp.Expr:
        start = self.peek()
        value, was_name = self.primary()
        while True:
            if self.at("chr", "^"):
                self.take()
                arg = self.arg_tokens("^")
                k = keys(arg)
                if len(k) == 1 and k[0] in _TRANSPOSE:
                    value = ops.transpose(value)
                    self.shape(value, start)
                    continue
                if was_name and (k in _TIME_MARKERS or k == (("g", _TIME_MARKERS[0]),)):
                    continue
                if was_name and k in _NEXT_MARKERS:
                    value = ops.later(value)
                    continue
                try:
                    value = bounded_power(value, self.exponent(arg, start))
                except ValueError as exc:
                    raise self.fail(str(exc), arg[0] if arg else start) from None
                continue
            if self.at("chr", "_"):
                self.take()
                arg = self.arg_tokens("_")
                k = keys(arg)
                if was_name and k in _TIME_MARKERS:
                    continue
                if was_name and k in _NEXT_MARKERS:
                    value = ops.later(value)
                    continue
                if arg and arg[0].kind == "chr" and arg[0].value == "[":
                    value = self.rows_slice(value, arg, start)
                    continue
                if len(arg) == 1 and arg[0].kind == "num" and "." not in arg[0].value:
                    axis = self.axis_for(value, start)
                    value = ops.pick(value, sp.Integer(axis), sp.Integer(int(arg[0].value)))
                    continue
                raise self.fail(f"cannot read the subscript `{self.text[arg[0].start:arg[-1].end] if arg else ''}` "
                                "here", arg[0] if arg else start)
            if self.at("chr", "[") and self._is_slice():
                value = self.slice(value, start)
                continue
            if self.at("chr", "'"):
                raise self.fail("a prime `'` is read only after a function such as \\sigma or \\tanh (its derivative)")
            return value

    def arg_tokens(self, what: str) -> list[Tok]:
        if self.peek() is None:
            raise self.fail(f"`{what}` needs something after it")
        t = self.take()
        return list(t.value) if t.kind == "grp" else [t]

    def exponent(self, arg, start) -> sp.Expr:
        k = arg
        sign = 1
        if k and k[0].kind == "chr" and k[0].value == "-":
            sign, k = -1, k[1:]
        if len(k) == 1 and k[0].kind == "num":
            value = sp.Rational(k[0].value) * sign
            if abs(value) > MAX_EXPONENT:
                raise self.fail(f"exponent {value} is too large (at most {MAX_EXPONENT})", arg[0])
            return value
        shown = self.text[arg[0].start:arg[-1].end] if arg else ""
        raise self.fail(f"cannot read the superscript `{shown}`: a transpose is ^{{T}}, a power a number like ^{{2}}",
                        arg[0] if arg else start)

    def axis_for(self, value, tok) -> int:
        s = self.shape(value, tok)
        nd = len(s) if s else 1
        return min(self.r.feature_axis, max(nd - 1, 0))

    def rows_slice(self, value, arg, start) -> sp.Expr:
        if not (arg[-1].kind == "chr" and arg[-1].value == "]"):
            raise self.fail("a slice subscript reads `_{[a:b]}`", arg[0])
        inner = arg[1:-1]
        parts = _split(inner, ":")
        if len(parts) != 2:
            raise self.fail("a slice subscript reads `_{[a:b]}`", arg[0])
        a = self.sub(parts[0]).bound(sp.Integer(0))
        b = self.sub(parts[1]).bound(None)
        if b is None:
            b = self.extent(value, self.axis_for(value, start), start)
        return ops.take(value, sp.Integer(self.axis_for(value, start)), a, b)

    def _is_slice(self) -> bool:
        depth = 0
        for j in range(self.i, len(self.toks)):
            t = self.toks[j]
            if t.kind == "chr" and t.value in "[(":
                depth += 1
            elif t.kind == "chr" and t.value in "])":
                depth -= 1
                if depth == 0:
                    return False
            elif t.kind == "chr" and t.value == ":" and depth == 1:
                return True
        return False

    def bracket(self) -> list[Tok]:
        """Tokens inside the [ ... ] or ( ... ) starting here (consumed)."""
        open_tok = self.take()
        close = "]" if open_tok.value == "[" else ")"
        depth = 1
        start = self.i
        while self.i < len(self.toks):
            t = self.toks[self.i]
            if t.kind == "chr" and t.value in "[(":
                depth += 1
            elif t.kind == "chr" and t.value in "])":
                depth -= 1
                if depth == 0:
                    inner = self.toks[start:self.i]
                    if t.value != close:
                        raise self.fail(f"`{open_tok.value}` is closed by `{t.value}`", t)
                    self.i += 1
                    return inner
            self.i += 1
        raise self.fail(f"`{open_tok.value}` is never closed", open_tok)

    def slice(self, value, start) -> sp.Expr:
        tok = self.peek()
        inner = self.bracket()
        items = _split(inner, ",")
        chosen = []
        for axis, item in enumerate(items):
            k = keys(item)
            if k == (("chr", ":"),):
                continue
            chosen.append((axis, item))
        if len(chosen) != 1:
            raise self.fail("slice exactly one axis: `W[:, a:b]` or `x[a:b]`", tok)
        axis, item = chosen[0]
        if len(items) == 1:
            axis = self.r.feature_axis
        parts = _split(item, ":")
        if len(parts) == 1:
            k = self.sub(parts[0]).bound(None)
            return ops.pick(value, sp.Integer(axis), k)
        if len(parts) > 3 or (len(parts) == 3 and parts[2]):
            raise self.fail("slice steps are not allowed", tok)
        a = self.sub(parts[0]).bound(sp.Integer(0))
        b = self.sub(parts[1]).bound(None)
        extent = None
        if b is None or a.could_extract_minus_sign() or b.could_extract_minus_sign():
            extent = self.extent(value, axis, tok)
        if b is None:
            b = extent
        if a.could_extract_minus_sign():
            a = extent + a
        if b.could_extract_minus_sign():
            b = extent + b
        out = ops.take(value, sp.Integer(axis), a, b)
        self.shape(out, tok)
        return out

    def extent(self, value, axis, tok):
        s = self.shape(value, tok)
        if not s:
            raise self.fail("cannot slice a number", tok)
        return s[min(axis, len(s) - 1)]

    def bound(self, default):
        if self.peek() is None:
            return default
        e = self.expr()
        self.expect_end()
        if e.free_symbols - set(self.r.dims.values()):
            raise self.fail("a slice bound is a number or a size such as n_a")
        return e

    def primary(self) -> tuple[sp.Expr, bool]:
        tok = self.peek()
        if tok is None:
            raise self.fail("the formula ends too early")
        # 1. a name of the notation (the longest one), unless a function's word spans further
        #    (``heaviside`` is not the name ``h`` followed by ``eaviside``)
        n, name = self.r.match(self.toks, self.i, self.exclude)
        if name is not None and tok.kind == "chr" and tok.value.isalpha():
            word, width = self.word()
            if word in _FUNCTION_WORDS and width > n:
                name = None
        grad = self.gradient_here()
        if grad is not None and grad[0] > n:
            self.i += grad[0]
            return sp.Symbol(grad[1]), True
        if name is not None:
            if name.target in _FUNCTION_TARGETS and name.target not in self.r.shapes:
                self.i += n
                return self.function(_FUNCTION_TARGETS[name.target], tok), False
            self.i += n
            if name.target in self.r.dims:
                return self.r.dims[name.target], True
            if name.target not in self.r.shapes:
                raise self.fail(f"the alias `{name.text}` names `{name.target}`, which {self.r.cell.name} does not have", tok)
            return sp.Symbol(name.target), True
        if tok.kind == "num":
            self.take()
            return (sp.Rational(tok.value) if "." in tok.value else sp.Integer(int(tok.value))), False
        if tok.kind == "grp":
            self.take()
            p = self.sub(tok.value)
            e = p.expr()
            p.expect_end()
            return e, False
        if tok.kind == "chr" and tok.value in "([":
            inner = self.bracket()
            parts = _split(inner, ",;")
            values = []
            for part in parts:
                p = self.sub(part)
                values.append(p.expr())
                p.expect_end()
            if len(values) == 1:
                return values[0], False
            out = ops.concat(sp.Integer(self.r.feature_axis), *values)
            self.shape(out, tok)
            return out, False
        if tok.kind == "env":
            return self.matrix(tok), False
        if tok.kind == "cmd":
            if tok.value == "\\frac":
                return self.frac(tok), False
            if tok.value in _FUNCTION_CMDS:
                self.take()
                return self.function(_FUNCTION_CMDS[tok.value], tok), False
            if tok.value == "\\mathbb" and self.at("num", "1", 1) and self.at("chr", "[", 2):
                return self.indicator(tok), False
            if tok.value == "\\sum":
                return self.summation(tok), False
            if tok.value == "\\left.":
                return self.later(tok), False
        if tok.kind == "chr" and tok.value.isalpha():
            word, width = self.word()
            if word in _FUNCTION_WORDS and self.i + width < len(self.toks):
                self.i += width
                f = _FUNCTION_WORDS[word]
                return self.function(f, tok), False
            if tok.value == "e" and self.at("chr", "^", 1):
                self.take()
                self.take()
                arg = self.arg_tokens("^")
                p = self.sub(arg)
                e = p.expr()
                p.expect_end()
                return sp.exp(e), False
            if tok.value == "e" and self.at("chr", "_", 1) and self.r.cell.loss.kind == "squared_error":
                return self.basis(tok), False
        raise self.unknown(tok)

    def unknown(self, tok) -> LatexError:
        # the span of the unknown name: the token and its sub/superscripts
        j = self.i + 1
        while j + 1 < len(self.toks) and self.toks[j].kind == "chr" and self.toks[j].value in "^_":
            j += 2
        end = self.toks[min(j, len(self.toks)) - 1].end
        shown = self.text[tok.start:end]
        if tok.kind == "cmd" and tok.value not in _KNOWN_CMDS and j == self.i + 1:
            return self.fail(f"unknown command `{tok.value}`{self.r.suggest(shown)}", tok)
        if tok.kind == "chr" and not tok.value.isalnum():
            return self.fail(f"cannot read `{shown}` here", tok)
        hint = getattr(self, "hint", "") or self.r.suggest(shown)
        return self.fail(f"unknown symbol `{shown}`{hint}", tok)

    def word(self) -> tuple[str, int]:
        j = self.i
        word = ""
        while j < len(self.toks) and self.toks[j].kind == "chr" and self.toks[j].value.isalpha():
            word += self.toks[j].value
            j += 1
        for w in _FUNCTION_WORDS_LONGEST_FIRST:
            if word.startswith(w):
                return w, len(w)
        return word, len(word)

    def gradient_here(self) -> tuple[int, str] | None:
        """``d`` or ``\\partial`` followed by a name: that name's gradient."""
        tok = self.peek()
        if tok is None or tok.key not in _D:
            return None
        n, name = self.r.match(self.toks, self.i + 1, self.exclude)
        if name is None:
            return None
        g = self.r.gradient_of(name.target)
        if g is None:
            if name.target not in self.r.backward:
                self.hint = (f"; the derivation names no gradient with respect to `{name.target}` itself"
                             f"{self._preact_hint(name.target)}")
            return None
        return n + 1, g

    def frac(self, tok) -> sp.Expr:
        self.take()
        if self.peek() is None or self.peek(1) is None:
            raise self.fail("\\frac needs two arguments", tok)
        num = self.arg_tokens("\\frac")
        den = self.arg_tokens("\\frac")
        if num and den and num[0].key in _D and den[0].key in _D and keys(num[1:]) in _LOSS:
            n, name = self.r.match(den, 1, self.exclude)
            if name is not None and n == len(den) - 1:
                g = name.target if name.target in self.r.backward else self.r.gradient_of(name.target)
                if g is None:
                    raise self.fail(f"the derivation names no gradient with respect to `{self.text[den[1].start:den[-1].end]}`"
                                    f"{self._preact_hint(name.target)}", tok)
                return sp.Symbol(g)
        pn, pd = self.sub(num), self.sub(den)
        a = pn.expr()
        pn.expect_end()
        b = pd.expr()
        pd.expect_end()
        return a / b

    def _preact_hint(self, target: str) -> str:
        pre = self.r.cell.preact_names.get(target)
        return f"; the gradient at its pre-activation is `{pre}`" if pre else ""

    def function(self, f, tok) -> sp.Expr:
        power = None
        derivative = False
        while True:
            if self.at("chr", "^"):
                self.take()
                arg = self.arg_tokens("^")
                if [t.key for t in arg] == [("cmd", "\\prime")]:  # \sigma^{\prime}: the derivative
                    derivative = True
                else:
                    power = self.exponent(arg, tok)
                continue
            if self.at("chr", "'"):
                self.take()
                derivative = True
                continue
            break
        nxt = self.peek()
        if nxt is None:
            raise self.fail("a function needs an argument", tok)
        row = functions.BY_CLASS.get(f)
        if row is not None and row.arity > 1:  # maximum(a, b): the arguments in one bracket, split at commas
            if not (nxt.kind == "chr" and nxt.value in "(["):
                raise self.fail(f"`{row.name}` takes {row.arity} arguments in brackets: ({', '.join('ab'[:row.arity])})", tok)
            parts = _split(self.bracket(), ",")
            if len(parts) != row.arity or not all(parts):
                raise self.fail(f"`{row.name}` takes {row.arity} arguments", tok)
            args = []
            for part in parts:
                p = self.sub(part)
                args.append(p.expr())
                p.expect_end()
            if derivative:
                raise self.fail(f"a prime is not read after `{row.name}` (it has {row.arity} arguments)", tok)
            out = f(*args)
            if power is not None:
                out = out ** power
            self.shape(out, tok)
            return out
        if nxt.kind == "chr" and nxt.value in "([":
            inner = self.bracket()
            p = self.sub(inner)
            arg = p.expr()
            p.expect_end()
        elif nxt.kind == "grp":
            self.take()
            p = self.sub(nxt.value)
            arg = p.expr()
            p.expect_end()
        else:
            arg = self.postfix()
        if f == "softmax":
            out = ops.softmax(arg, sp.Integer(self.r.feature_axis))
        elif derivative:  # f'(x), as its row of derive.spec.functions writes it
            if row is None:
                raise self.fail("a prime is read only after an elementwise function such as \\sigma or \\tanh", tok)
            out = row.partials(f(arg), arg)[0]
        else:
            out = f(arg)
        if power is not None:
            try:
                out = bounded_power(out, power)
            except ValueError as exc:
                raise self.fail(str(exc), tok) from None
        self.shape(out, tok)
        return out

    def indicator(self, tok) -> sp.Expr:
        r"""``\mathbb{1}\left[x > 0\right]``: the step of relu' (1 where x > 0, else 0)."""
        self.take()
        self.take()
        inner = self.bracket()
        if len(inner) < 3 or not (inner[-2].kind == "cmd" and inner[-2].value == "\\rangle"
                                  and inner[-1].kind == "num" and float(inner[-1].value) == 0):
            raise self.fail(r"read `\mathbb{1}\left[x > 0\right]` (1 where x > 0, else 0)", tok)
        p = self.sub(inner[:-2])
        out = sp.Heaviside(p.expr(), 0)
        p.expect_end()
        self.shape(out, tok)
        return out

    def summation(self, tok) -> sp.Expr:
        self.take()
        index = None
        while self.at("chr", "_") or self.at("chr", "^"):
            which = self.take().value
            arg = self.arg_tokens(which)
            if which == "_":
                index = arg
        if index is None:
            raise self.fail("say what the sum runs over: \\sum_{t} (the steps) or \\sum_{batch}", tok)
        body = self.term()  # a sum runs over the product that follows it, up to the next + or -
        if index and index[0].key == ("chr", "t"):
            return sp.Sum(body, (_t, 1, _T))
        cell = self.r.cell
        if cell.layout == "none":
            raise self.fail(f"{cell.name} has no batch to sum over", tok)
        axis, keep = (1, 1) if cell.layout == "columns" else (0, 0)
        out = ops.batch_sum(body, sp.Integer(axis), sp.Integer(keep))
        self.shape(out, tok)
        return out

    def later(self, tok) -> sp.Expr:
        self.take()
        start = self.i
        depth = 0
        while self.i < len(self.toks):
            t = self.toks[self.i]
            if t.kind == "cmd" and t.value == "\\left.":
                depth += 1
            if t.kind == "cmd" and t.value == "\\right|":
                if depth == 0:
                    break
                depth -= 1
            self.i += 1
        if self.i >= len(self.toks):
            raise self.fail("`\\left.` needs its `\\right|_{t+1}`", tok)
        inner = self.toks[start:self.i]
        self.i += 1
        if not (self.at("chr", "_") and self.peek(1) is not None and keys(self.arg_peek()) == keys(tokens_of("t+1"))):
            raise self.fail("`\\left. X \\right|` reads `\\right|_{t+1}`: X at step t+1", tok)
        self.take()
        self.take()
        p = self.sub(inner)
        e = p.expr()
        p.expect_end()
        return ops.later(e)

    def arg_peek(self):
        t = self.peek(1)
        return list(t.value) if t.kind == "grp" else [t]

    def matrix(self, tok) -> sp.Expr:
        self.take()
        name, rows = tok.value
        if name not in _MATRICES:
            raise self.fail(f"the environment `{name}` is not read here", tok)
        if not rows:
            raise self.fail("an empty matrix", tok)
        ncols = {len(r) for r in rows}
        if len(rows) > 1 and ncols != {1}:
            raise self.fail("stack blocks either as rows (`\\\\`) or as columns (`&`), not both", tok)
        cells = [r[0] for r in rows] if len(rows) > 1 else list(rows[0])
        axis = 0 if len(rows) > 1 else 1
        parts = []
        for cell in cells:
            p = self.sub(cell)
            parts.append(p.expr())
            p.expect_end()
        if len(parts) == 1:
            return parts[0]
        out = ops.concat(sp.Integer(axis), *parts)
        self.shape(out, tok)
        return out

    def basis(self, tok) -> sp.Expr:
        self.take()
        self.take()
        arg = self.arg_tokens("_")
        if not (len(arg) == 1 and arg[0].kind == "num"):
            raise self.fail("e_{k} is the unit vector of unit k: k must be a number", tok)
        loss = self.r.cell.loss
        shape = self.r.shapes[loss.prediction]
        ndim = len(shape)
        axis = min(self.r.feature_axis, max(ndim - 1, 0))
        return ops.basis(sp.Integer(axis), sp.Integer(ndim), sp.Integer(int(arg[0].value)), shape[axis])


_KNOWN_CMDS = set(_FUNCTION_CMDS) | {"\\mathbb", "\\frac", "\\sum", "\\left.", "\\right|", "\\odot", "\\circ", "\\cdot", "\\times",
                                    "\\otimes", "\\div", "\\partial", "\\top", "\\intercal"}
