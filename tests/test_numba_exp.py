"""The compiled modules' exponential, sigmoid and tanh against NumPy's, in ulps.

The polynomial is re-derived from scratch (mpmath) and must be the stored one;
the compiled functions of a generated twin are then measured against NumPy's
libm (float64 references, rounded to the dtype) on a dense grid that crosses
every reduction interval, the saturation points and the range bounds.
"""

import numpy as np
import pytest

from derive.codegen.numba_exp import EXP_ERROR, EXP_HELD, EXP_POLYNOMIAL, fit_exp_polynomial, relative_error

DTYPES = {"f32": np.float32, "f64": np.float64}


@pytest.mark.parametrize("sfx", sorted(EXP_POLYNOMIAL))
def test_the_stored_polynomial_is_the_fit_and_its_error_is_bounded(sfx):
    coefficients = EXP_POLYNOMIAL[sfx]
    fitted, _ = fit_exp_polynomial(len(coefficients) - 1, fixed=EXP_HELD)
    assert fitted == pytest.approx(list(coefficients), rel=1e-12, abs=0)
    dtype = DTYPES[sfx]
    assert relative_error(coefficients, dtype) <= EXP_ERROR[sfx]  # as the loop holds them: rounded to its dtype
    assert EXP_ERROR[sfx] < float(np.finfo(dtype).eps) / 16  # the rounding of the evaluation, not the polynomial, decides


@pytest.fixture(scope="module")
def twin():
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from test_numba_modules import compiled

    return compiled("pytorch")


def _ulps(got, want, dtype):
    """|got - want| in ulps of the dtype at want (want rounded to the dtype)."""
    want = want.astype(dtype)
    with np.errstate(over="ignore"):  # the spacing at the dtype's max is infinite
        spacing = np.spacing(np.abs(want)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want.astype(np.float64)) / spacing


def _apply(function):
    import numba

    @numba.njit
    def over(xs, out):
        for i in range(xs.shape[0]):
            out[i] = function(xs[i])
    return over


@pytest.mark.parametrize("dtype,sfx", [(np.float32, "f32"), (np.float64, "f64")])
def test_exp_sigmoid_tanh_are_within_a_few_ulps_of_numpy(twin, dtype, sfx):
    bound = float(getattr(twin, f"_EXP_BOUND_{sfx}"))
    sat = float(getattr(twin, f"_SAT_{sfx}"))
    xs = np.concatenate([np.linspace(-bound, bound, 200_001), np.linspace(-2 * sat, 2 * sat, 200_001),
                         np.linspace(-1, 1, 100_001), [0.0, -0.0, 1e-30, -1e-30]]).astype(dtype)
    wide = xs.astype(np.float64)
    # each function as documented: exp held within the dtype's range; sigmoid's
    # and tanh's exponent held within +-sat, where they have saturated (the NumPy module's bound)
    for name, reference, top in [("_exp", np.exp(np.clip(wide, -bound, bound)), 2),
                                 ("_sigmoid", 1 / (1 + np.exp(-np.clip(wide, -sat, sat))), 2),
                                 ("_tanh", np.tanh(np.clip(wide, -sat / 2, sat / 2)), None)]:
        out = np.empty_like(xs)
        _apply(getattr(twin, f"{name}_{sfx}"))(xs, out)
        assert out.dtype == dtype and np.all(np.isfinite(out)), name
        if top is not None:
            assert _ulps(out, reference, dtype).max() <= top, name
        else:  # tanh(x) = 2/(1 + exp(-2x)) - 1 cancels toward 0: an absolute bound there, a few ulps elsewhere
            eps = float(np.finfo(dtype).eps)
            near = np.abs(wide) < 0.5
            assert np.max(np.abs(out[near] - reference[near])) <= 2 * eps, name
            assert _ulps(out[~near], reference[~near], dtype).max() <= 8, name  # 5 measured, with FMA


@pytest.mark.parametrize("dtype,sfx", [(np.float32, "f32"), (np.float64, "f64")])
def test_exp_is_held_within_the_range_and_saturates_cleanly(twin, dtype, sfx):
    xs = np.array([-1e4, -1e30, 1e4, 1e30, np.finfo(dtype).max, -np.finfo(dtype).max], dtype)
    for name in ("_exp", "_sigmoid", "_tanh"):
        out = np.empty_like(xs)
        _apply(getattr(twin, f"{name}_{sfx}"))(xs, out)
        assert np.all(np.isfinite(out)), (name, out)
    sig = np.empty_like(xs)
    _apply(getattr(twin, f"_sigmoid_{sfx}"))(xs, sig)
    assert list(sig[[0, 2]]) == pytest.approx([0.0, 1.0], abs=2 * float(np.finfo(dtype).eps))  # saturated at +-sat


def _helpers(twin, sfx):
    """Every row of SCALAR_FUNCTIONS compiled in the dtype ``sfx``, from the text a
    module would carry (helper_lines), on the twin's exponential and constants."""
    import numba
    from fractions import Fraction

    from derive.codegen.numba_printer import SCALAR_FUNCTIONS, Constants, helper_lines

    constants = Constants()
    constants.called.update(SCALAR_FUNCTIONS)
    lines = helper_lines(constants, sfx)
    namespace = dict(vars(twin))
    for name, dtype, value in constants.definitions():
        namespace[name] = np.dtype(dtype.removeprefix("np.")).type(float(Fraction(value.replace(" ", ""))))
    source = "\n".join(f"def {name}({params}):\n    return {body}\n" for name, params, body in lines)
    exec(compile(source, f"<helpers {sfx}>", "exec"), namespace)  # our own generated text, as a module carries it
    helpers = {key: namespace[f"{row[0]}_{sfx}"] for key, row in SCALAR_FUNCTIONS.items()}
    return {key: numba.njit(f) if not hasattr(f, "py_func") else f for key, f in helpers.items()}


def _apply2(function):
    import numba

    @numba.njit
    def over(a, b, out):
        for i in range(a.shape[0]):
            out[i] = function(a[i], b[i])
    return over


@pytest.mark.parametrize("dtype,sfx", [(np.float32, "f32"), (np.float64, "f64")])
def test_every_compiled_function_is_numpys_at_edges_and_kinks(twin, dtype, sfx):
    """Each row of SCALAR_FUNCTIONS against the language's own NumPy spelling of the
    function (derive.spec.functions, its ``float64`` column, run in the dtype) at
    zeros of both signs, kinks, ties, tiny, huge, infinite and NaN arguments:
    the selects exactly (a NaN stays a NaN), log and softplus within a few ulps."""
    from derive.spec.functions import FUNCTIONS

    finfo = np.finfo(dtype)
    edges = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 1e-30, -1e-30, float(finfo.tiny), -float(finfo.tiny),
             30.0, -30.0, 100.0, -100.0, 1e4, -1e4, float(finfo.max), -float(finfo.max), np.inf, -np.inf, np.nan]
    xs = np.concatenate([np.array(edges), np.linspace(-50, 50, 20_001)]).astype(dtype)
    ys = np.concatenate([np.array(edges[::-1]), np.linspace(-50, 50, 20_001)[::-1]]).astype(dtype)
    ys[len(edges)::7] = xs[len(edges)::7]  # ties for maximum and minimum (a NaN meets a number above)
    compiled = _helpers(twin, sfx)
    ulps = {"log": 2, "softplus": 4}
    for key, function in compiled.items():
        if key in ("sigmoid", "tanh", "exp"):
            continue  # the ulp tests above, within their documented holds
        row = FUNCTIONS[key]
        args = (xs,) if row.arity == 1 else (xs, ys)
        if key == "heaviside":
            args = (xs, np.full_like(xs, 0.5))
        with np.errstate(all="ignore"):
            want = np.asarray(row.float64(*args)).astype(dtype)
        got = np.empty_like(xs)
        (_apply(function)(xs, got) if len(args) == 1 else _apply2(function)(*args, got))
        assert got.dtype == dtype, key
        assert np.array_equal(np.isnan(got), np.isnan(want)), (key, xs[np.isnan(got) != np.isnan(want)])
        finite = np.isfinite(want)
        assert np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]), key
        if key in ulps:  # a subnormal value may come out 0 (softplus far below 0: e^x underflows)
            close = _ulps(got[finite], want[finite], dtype) <= ulps[key]
            flushed = np.abs(got[finite] - want[finite]) <= float(finfo.tiny)
            assert np.all(close | flushed), (key, xs[finite][~(close | flushed)])
        else:
            assert np.array_equal(got[finite], want[finite]), (key, xs[finite][got[finite] != want[finite]])
