"""The polynomial of the compiled modules' vectorisable exponential.

Contract. The compiled unit loops compute ``exp(x)`` as ``2**n * p(r)`` with
``x = n*ln2 + r``, ``|r| <= ln2/2`` (Cody-Waite), and ``p`` the polynomial of
:data:`EXP_POLYNOMIAL` for the loop's dtype: its coefficients, lowest degree
first, as Python floats (the template writes them as constants of the dtype).
They minimise the largest RELATIVE error of ``p(r)`` against ``exp(r)`` on
``[-ln2/2, ln2/2]``; :data:`EXP_ERROR` bounds that error, far below half an
ulp of the dtype, so the rounding of the evaluation decides the accuracy
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
    "f32": (1.0000000005542484, 1.0000000363227997, 0.4999999207855055, 0.1666642017118574,
            0.04166822585471008, 0.008374815715027028, 0.0013836830024996517),
    "f64": (1.0, 1.0, 0.5000000000000018, 0.1666666666666617, 0.041666666666492734,
            0.008333333333559385, 0.0013888888951230586, 0.00019841269432468046,
            2.4801486515713216e-05, 2.7557622698364503e-06, 2.7632295002067743e-07,
            2.4994256983328527e-08),
}

# dtype suffix -> a bound on max |p(r)/exp(r) - 1| over |r| <= ln2/2 (exact arithmetic)
EXP_ERROR: dict[str, float] = {"f32": 2e-9, "f64": 4e-18}


def fit_exp_polynomial(degree: int, points: int = 120, rounds: int = 30) -> tuple[list[float], float]:
    """The near-minimax polynomial of ``degree`` for exp on [-ln2/2, ln2/2]
    (relative error): its coefficients, lowest first, and its largest relative
    error on a fine grid of the interval."""
    import mpmath as mp

    with mp.workdps(50):
        half = mp.log(2) / 2
        xs = [half * mp.cos(mp.pi * (k + mp.mpf(1) / 2) / points) for k in range(points)]
        weights = [1 / mp.e ** x for x in xs]  # relative error: residuals divided by exp(x)
        for _ in range(rounds):
            A = mp.matrix([[w * x ** j for j in range(degree + 1)] for w, x in zip(weights, xs)])
            b = mp.matrix([w * mp.e ** x for w, x in zip(weights, xs)])
            c = mp.lu_solve(A.T * A, A.T * b)
            errors = [abs(sum(c[j] * x ** j for j in range(degree + 1)) / mp.e ** x - 1) for x in xs]
            top = max(errors)
            # Lawson: weigh up where the error is largest, toward equal ripples
            weights = [w * mp.sqrt(e / top + mp.mpf(10) ** -40) for w, e in zip(weights, errors)]
        grid = [half * (2 * mp.mpf(k) / 4000 - 1) for k in range(4001)]
        worst = max(abs(sum(c[j] * x ** j for j in range(degree + 1)) / mp.e ** x - 1) for x in grid)
        return [float(v) for v in c], float(worst)
