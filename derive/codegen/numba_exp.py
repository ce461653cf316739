"""The polynomial of the compiled modules' vectorisable exponential.

Contract. The compiled unit loops compute ``exp(x)`` as ``2**n * p(r)`` with
``x = n*ln2 + r``, ``|r| <= ln2/2`` (Cody-Waite), and ``p`` the polynomial of
:data:`EXP_POLYNOMIAL` for the loop's dtype: its coefficients, lowest degree
first, as Python floats (the template writes them as constants of the dtype).
The first :data:`EXP_HELD` of them are exp's own (1, 1: exact in any dtype);
the others minimise the largest RELATIVE error of ``p(r)`` against ``exp(r)``
on ``[-ln2/2, ln2/2]``. :data:`EXP_ERROR` bounds that error for the
coefficients as the loop holds them (rounded to its dtype), below a
sixteenth of an ulp, so the rounding of the evaluation decides the accuracy
(measured against NumPy's exp in tests/test_numba_exp.py).

:func:`fit_exp_polynomial` re-derives them (50 digits, mpmath): a weighted
least-squares fit on Chebyshev points of the interval, reweighted by Lawson's
rule toward the equi-oscillating minimax. The stored table is its output,
rounded to float; a test refits and compares. A Taylor polynomial of the same
accuracy needs two more terms in float64 and one more in float32, each one
more fused multiply-add per exponential in every unit of every step.
"""

from __future__ import annotations

# dtype suffix -> coefficients c0..cd of p(r) = c0 + c1 r + ... + cd r**d
EXP_POLYNOMIAL: dict[str, tuple[float, ...]] = {
    "f32": (1.0, 1.0, 0.4999999345079677, 0.16666520680903696, 0.04166838754459712, 0.00836871065473586,
            0.0013814604481294747),
    "f64": (1.0, 1.0, 0.5000000000000011, 0.16666666666666413, 0.04166666666653024, 0.008333333333494206,
            0.0013888888943603538, 0.00019841269507094353, 2.48014931307574e-05, 2.7557585959182064e-06,
            2.763023566654021e-07, 2.500017593131474e-08),
}
EXP_HELD = 2  # c0 = c1 = 1 held: a fitted c1 of 1 + 4e-8 rounds to 1 in float32 and costs the fit its accuracy

# dtype suffix -> a bound on max |p(r)/exp(r) - 1| over |r| <= ln2/2, the
# coefficients rounded to the dtype (exact arithmetic otherwise)
EXP_ERROR: dict[str, float] = {"f32": 4e-9, "f64": 1.2e-17}


def fit_exp_polynomial(degree: int, fixed: int = 0, points: int = 120,
                       rounds: int = 30) -> tuple[list[float], float]:
    """The near-minimax polynomial of ``degree`` for exp on [-ln2/2, ln2/2]
    (relative error), its first ``fixed`` coefficients held at exp's own
    (1, 1, 1/2, ...: exact in any dtype when they are 1): its coefficients,
    lowest first, and its largest relative error on a fine grid of the interval."""
    import mpmath as mp

    with mp.workdps(50):
        half = mp.log(2) / 2
        xs = [half * mp.cos(mp.pi * (k + mp.mpf(1) / 2) / points) for k in range(points)]
        weights = [1 / mp.e ** x for x in xs]  # relative error: residuals divided by exp(x)
        held = [1 / mp.factorial(j) for j in range(fixed)]
        free = range(fixed, degree + 1)
        for _ in range(rounds):
            A = mp.matrix([[w * x ** j for j in free] for w, x in zip(weights, xs)])
            b = mp.matrix([w * (mp.e ** x - sum(c * x ** j for j, c in enumerate(held))) for w, x in zip(weights, xs)])
            solved = mp.lu_solve(A.T * A, A.T * b)
            c = held + [solved[i] for i in range(solved.rows)]
            errors = [abs(_poly(c, x) / mp.e ** x - 1) for x in xs]
            top = max(errors)
            # Lawson: weigh up where the error is largest, toward equal ripples
            weights = [w * mp.sqrt(e / top + mp.mpf(10) ** -40) for w, e in zip(weights, errors)]
        return [float(v) for v in c], relative_error(c)


def relative_error(coefficients, dtype_round=None) -> float:
    """max |p(r)/exp(r) - 1| on a fine grid of [-ln2/2, ln2/2], in exact
    arithmetic, for the coefficients as given, or as ``dtype_round`` rounds
    them first (``numpy.float32``: the constants a float32 loop evaluates)."""
    import mpmath as mp

    with mp.workdps(50):
        c = [mp.mpf(float(dtype_round(v))) if dtype_round else mp.mpf(v) for v in coefficients]
        half = mp.log(2) / 2
        grid = [half * (2 * mp.mpf(k) / 4000 - 1) for k in range(4001)]
        return float(max(abs(_poly(c, x) / mp.e ** x - 1) for x in grid))


def _poly(c, x):
    p = c[-1]
    for v in reversed(c[:-1]):
        p = p * x + v
    return p
