r"""Scaling laws fitted as the careful studies fit them: one robust estimator, many starts, a bootstrap.

Pure NumPy and SciPy. Error ``e`` is ``1 − accuracy`` in (0, 1); compute ``C`` is training
FLOPs. Inputs are normalised by their smallest value for conditioning (``c = C / c0``, and
``n = N / n0``, ``d = D / d0`` for the joint law); every parameter is reported in those units.

**Laws** (:data:`FORMS`):

* ``power``: ``e = a · c^(−b)``;
* ``frontier`` (Zhai et al. 2022): ``e = e∞ + a · (c + d)^(−b)``, ``a > 0``, ``b > 0``,
  ``d ≥ 0``, ``0 ≤ e∞ < min e``;
* ``m4`` (Alabdulmohsin et al. 2022): ``(e − e∞) / (ε₀ − e)^α = β · c^(−γ)``, ``ε₀`` the
  chance error (the caller's ``eps0``), ``0 ≤ e∞ < e < ε₀``, ``α ≥ 0``, ``β, γ > 0``. The left
  side increases in ``e``, so a prediction solves for ``e`` per point: with
  ``e = e∞ + W σ(u)``, ``W = ε₀ − e∞``, the equation reads
  ``g(u) = log W + log σ(u) − α (log W + log σ(−u)) − log β + γ log c = 0``, ``g' = σ(−u) + α σ(u)``
  and ``g'' = (α − 1) σ(u) σ(−u)`` of one sign, so Newton's method converges monotonically;
* ``joint`` (Hoffmann et al. 2022): ``e = E + A / n^α + B / d^β`` (``N`` parameters or MACs per
  image, ``D`` samples seen), fitted as ``log e = LSE(a − α log n, b − β log d, log E)``.

**Estimator** (Hoffmann et al. 2022, approach 3). With ``r_i = log ê_i − log e_i``, minimise
``Σ_i H_δ(r_i)``, ``H_δ(r) = r²/2`` for ``|r| ≤ δ`` and ``δ (|r| − δ/2)`` beyond, ``δ = 10⁻³``
(for residuals of a few percent a least-absolute-deviation fit in ``log e``, robust to outliers).
L-BFGS-B with analytic gradients works on ``log a``, ``log β``, ``log(1 + d)`` and the LSE form,
with bounds where a parameter must be bounded, from every point of a grid of starts
(``itertools.product`` of a few values per parameter); the best optimum is the estimate, and
``converged_share`` the share of starts that ended within ``10⁻⁶`` (relative) of it.

**Uncertainty.** :func:`bootstrap` resamples runs (or whole groups of points, e.g. every horizon
of one trained trunk) with replacement, refits each resample from the full-sample optimum in the
full sample's units, and gives percentile intervals (10–90% by default) of every parameter;
:func:`band` turns the resampled parameters into a pointwise prediction band.

>>> c = np.geomspace(1e9, 1e12, 12)
>>> r = fit("frontier", c, 0.05 + 0.6 * (c / 1e9) ** -0.4)
>>> {k: round(v, 3) for k, v in r["params"].items()}, r["c0"]
({'e_inf': 0.05, 'a': 0.6, 'b': 0.4, 'd': 0.0}, 1000000000.0)
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import optimize, stats

DELTA = 1e-3  # Huber threshold on log residuals
RTOL, ATOL = 1e-6, 1e-12  # a start "converged" when its objective is this close to the best
_OPTIONS = {"maxiter": 3000, "ftol": 1e-12, "gtol": 1e-8}


@dataclass(frozen=True)
class Form:
    """A law: its reported parameters and how the optimiser sees them.

    ``internal``/``natural`` map reported parameters to the optimiser's ``θ`` and back;
    ``logpred(θ, data)`` is ``(log ê, ∂ log ê / ∂θ)``; ``bounds(data)`` bounds ``θ``;
    ``grid(data)`` lists the per-parameter start values (reported units) whose product is the grid.
    """

    name: str
    params: tuple[str, ...]
    internal: Callable
    natural: Callable
    logpred: Callable
    bounds: Callable
    grid: Callable


@dataclass
class _Data:
    e: np.ndarray
    le: np.ndarray
    lc: np.ndarray  # log of normalised compute (joint law: log n + log d)
    c: np.ndarray | None = None
    ln: np.ndarray | None = None
    ld: np.ndarray | None = None
    eps0: float | None = None

    @property
    def emin(self) -> float:
        return float(self.e.min())

    def anchor(self) -> float:
        """The median error at the smallest compute: the scale of the grid's amplitudes."""
        return float(np.median(self.e[self.lc <= self.lc.min() + 1e-9]))


# --- the laws -------------------------------------------------------------------------------

def _power_logpred(th, data):
    return th[0] - th[1] * data.lc, np.stack([np.ones_like(data.lc), -data.lc], axis=1)


def _frontier_logpred(th, data):
    einf, la, b, s = th
    cd = data.c + np.expm1(s)
    L = np.log(cd)
    P = np.exp(la - b * L)
    p = einf + P
    q = P / p
    jac = np.stack([1.0 / p, q, -L * q, -b * q * np.exp(s) / cd], axis=1)
    return np.log(p), jac


def _m4_solve(einf, alpha, R, eps0):
    """``u`` with ``g(u) = 0`` (module docstring), vectorised Newton from the asymptotes."""
    lw = np.log(eps0 - einf)
    v = R - (1.0 - alpha) * lw
    u = np.clip(np.where(v <= 0, v, v / max(alpha, 1e-3)), -60.0, 60.0)
    for _ in range(100):
        ls_p, ls_m = -np.logaddexp(0.0, -u), -np.logaddexp(0.0, u)
        g = lw + ls_p - alpha * (lw + ls_m) - R
        new = np.clip(u - g / (np.exp(ls_m) + alpha * np.exp(ls_p)), -60.0, 60.0)
        done = np.max(np.abs(new - u)) < 1e-12
        u = new
        if done:
            break
    return u


def _m4_logpred(th, data):
    einf, alpha, lbeta, gamma = th
    eps0 = data.eps0
    u = _m4_solve(einf, alpha, lbeta - gamma * data.lc, eps0)
    w = eps0 - einf
    lo, hi = w / (1.0 + np.exp(-u)), w / (1.0 + np.exp(u))  # e − e∞ and ε₀ − e
    e = einf + lo
    fe = 1.0 / lo + alpha / hi
    jac = np.stack([1.0 / lo, np.log(hi), np.ones_like(lo), -data.lc], axis=1) / (fe * e)[:, None]
    return np.log(e), jac


def _joint_logpred(th, data):
    le, a, alpha, b, beta = th
    z = np.stack([a - alpha * data.ln, b - beta * data.ld, np.full_like(data.ln, le)], axis=1)
    lp = np.logaddexp.reduce(z, axis=1)
    w = np.exp(z - lp[:, None])
    return lp, np.stack([w[:, 2], w[:, 0], -w[:, 0] * data.ln, w[:, 1], -w[:, 1] * data.ld], axis=1)


def _below_min(data):
    return (0.0, data.emin * (1 - 1e-6))


def _frontier_grid(data):
    e1 = data.anchor()
    fr, bs, ds, ms = (0.0, 0.5, 0.9), (0.1, 0.3, 0.7, 1.5), (0.0, 1.0, 10.0, 100.0), (0.3, 1.0, 3.0)
    return [(f * data.emin, m * (e1 - f * data.emin) * (1 + d) ** b, b, d)
            for f, b, d, m in itertools.product(fr, bs, ds, ms)]


def _m4_grid(data):
    e1 = min(data.anchor(), 0.5 * (data.e.max() + data.eps0))
    fr, als, gs, ms = (0.0, 0.5, 0.9), (0.0, 0.5, 1.0, 2.0), (0.1, 0.3, 0.7, 1.5), (0.3, 1.0, 3.0)
    return [(f * data.emin, al, m * (e1 - f * data.emin) / (data.eps0 - e1) ** al, g)
            for f, al, g, m in itertools.product(fr, als, gs, ms)]


def _joint_grid(data):
    top, low = np.log(data.e.max()), np.log(data.emin)
    amps, exps = (top - 2.5, top - 1.0, top + 0.3), (0.2, 0.5, 1.2)
    return [(np.exp(le), np.exp(a), al, np.exp(b), be)
            for le, a, al, b, be in itertools.product((low - 3.0, low - 0.7), amps, exps, amps, exps)]


def _power_grid(data):
    l1 = np.log(data.anchor())
    return [(np.exp(l1 + s), b) for s, b in itertools.product((-1.0, 0.0, 1.0), (0.0, 0.3, 1.0))]


FORMS: dict[str, Form] = {
    "power": Form("power", ("a", "b"),
                  lambda p: np.array([np.log(p[0]), p[1]]),
                  lambda t: np.array([np.exp(t[0]), t[1]]),
                  _power_logpred, lambda data: [(-50.0, 50.0), (-20.0, 20.0)], _power_grid),
    "frontier": Form("frontier", ("e_inf", "a", "b", "d"),
                     lambda p: np.array([p[0], np.log(p[1]), p[2], np.log1p(p[3])]),
                     lambda t: np.array([t[0], np.exp(t[1]), t[2], np.expm1(t[3])]),
                     _frontier_logpred,
                     lambda data: [_below_min(data), (-30.0, 30.0), (1e-6, 10.0), (0.0, 25.0)],
                     _frontier_grid),
    "m4": Form("m4", ("e_inf", "alpha", "beta", "gamma"),
               lambda p: np.array([p[0], p[1], np.log(p[2]), p[3]]),
               lambda t: np.array([t[0], t[1], np.exp(t[2]), t[3]]),
               _m4_logpred,
               lambda data: [_below_min(data), (0.0, 20.0), (-30.0, 30.0), (1e-6, 10.0)], _m4_grid),
    "joint": Form("joint", ("E", "A", "alpha", "B", "beta"),
                  lambda p: np.array([np.log(p[0]), np.log(p[1]), p[2], np.log(p[3]), p[4]]),
                  lambda t: np.array([np.exp(t[0]), np.exp(t[1]), t[2], np.exp(t[3]), t[4]]),
                  _joint_logpred,
                  lambda data: [(-30.0, np.log(data.emin)), (-30.0, 30.0), (0.0, 10.0),
                                (-30.0, 30.0), (0.0, 10.0)], _joint_grid),
}


# --- inputs -----------------------------------------------------------------------------------

def _form(form: str) -> Form:
    if form not in FORMS:
        raise ValueError(f"form: {form!r} is not a law; expected one of {sorted(FORMS)}")
    return FORMS[form]


def _vector(name: str, values, size: int | None = None) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or (size is not None and v.size != size):
        want = "a 1-D sequence" + ("" if size is None else f" of length {size} (as e)")
        raise ValueError(f"{name}: shape {v.shape}; expected {want}")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{name}: values must be finite and > 0; got min {v.min() if v.size else None}")
    return v


def _check(form: str, x, e, eps0=None):
    """Validated ``(form, x, e, eps0)``: ``x`` an array, or ``(N, D)`` for the joint law."""
    spec = _form(form)
    e = _vector("e", e)
    if np.any(e >= 1):
        raise ValueError(f"e: errors must lie in (0, 1) (1 − accuracy); got max {e.max()}")
    if form == "joint":
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise ValueError(f"x: expected a pair (N, D) of 1-D arrays for the joint law; got {type(x).__name__}")
        x = (_vector("x[0] (N)", x[0], e.size), _vector("x[1] (D)", x[1], e.size))
    else:
        x = _vector("x", x, e.size)
    if form == "m4":
        if eps0 is None or not (float(e.max()) < float(eps0) <= 1.0):
            raise ValueError(f"eps0: {eps0!r}; the m4 law needs the chance error, max(e) = {e.max():.4g} "
                             "< eps0 ≤ 1")
        eps0 = float(eps0)
    else:
        eps0 = None
    if e.size < len(spec.params):
        raise ValueError(f"e: {e.size} points; the {form} law has {len(spec.params)} parameters, "
                         "expected at least as many points")
    return spec, x, e, eps0


def _scale(form: str, x) -> tuple[float, ...]:
    return (float(x[0].min()), float(x[1].min())) if form == "joint" else (float(np.min(x)),)


def _data(form: str, x, e, eps0, scale) -> _Data:
    if form == "joint":
        ln, ld = np.log(x[0] / scale[0]), np.log(x[1] / scale[1])
        return _Data(e, np.log(e), ln + ld, ln=ln, ld=ld, eps0=eps0)
    c = x / scale[0]
    return _Data(e, np.log(e), np.log(c), c=c, eps0=eps0)


def _scale_keys(form: str, scale) -> dict:
    return {"n0": scale[0], "d0": scale[1]} if form == "joint" else {"c0": scale[0]}


# --- the estimator ----------------------------------------------------------------------------

def _objective(spec: Form, data: _Data):
    def f(th):
        lp, jac = spec.logpred(th, data)
        r = lp - data.le
        a = np.abs(r)
        val = np.sum(np.where(a <= DELTA, 0.5 * r * r / DELTA, a - 0.5 * DELTA))  # Σ H_δ / δ
        if not np.isfinite(val):
            return 1e100, np.zeros_like(th)
        return val, jac.T @ (np.clip(r, -DELTA, DELTA) / DELTA)
    return f


def _minimise(spec: Form, data: _Data, starts) -> list[tuple[float, np.ndarray]]:
    """``(Σ H_δ / δ, θ)`` from each start (reported units), by L-BFGS-B."""
    f, bounds = _objective(spec, data), spec.bounds(data)
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    out = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in starts:
            th0 = np.clip(spec.internal(np.asarray(p, np.float64)), lo, hi)
            if not np.all(np.isfinite(th0)):
                continue
            res = optimize.minimize(f, th0, jac=True, method="L-BFGS-B", bounds=bounds, options=_OPTIONS)
            if np.isfinite(res.fun) and res.fun < 1e100 and np.all(np.isfinite(res.x)):
                out.append((float(res.fun), res.x))
    return out


def _starts(spec: Form, data: _Data, starts):
    if starts is None:
        return spec.grid(data)
    if isinstance(starts, (int, np.integer)) and not isinstance(starts, bool):
        if starts < 1:
            raise ValueError(f"starts: {starts}; expected a positive number of grid points")
        grid = spec.grid(data)
        f, (lo, hi) = _objective(spec, data), zip(*spec.bounds(data))
        with np.errstate(all="ignore"):
            vals = [f(np.clip(spec.internal(np.asarray(p)), lo, hi))[0] for p in grid]
        return [grid[i] for i in np.argsort(vals, kind="stable")[:starts]]
    s = np.asarray(starts, np.float64)
    if s.ndim != 2 or s.shape[1] != len(spec.params):
        raise ValueError(f"starts: shape {s.shape}; expected (m, {len(spec.params)}) rows of {spec.params}")
    return list(s)


def _summarise(form, spec, data, scale, eps0, theta, best, share) -> dict:
    r = spec.logpred(theta, data)[0] - data.le
    rho = None
    if r.size >= 3 and np.ptp(r) > 0 and np.ptp(data.lc) > 0:
        rho = float(stats.spearmanr(r, data.lc)[0])
    return {"form": form, "params": dict(zip(spec.params, map(float, spec.natural(theta)))),
            **_scale_keys(form, scale), "eps0": eps0, "converged_share": share, "n": int(r.size),
            "rmse_log": float(np.sqrt(np.mean(r * r))), "spearman": rho, "objective": best * DELTA}


def fit(form: str, x, e, *, eps0=None, starts=None) -> dict:
    """Fit one law by the Huber estimator from a grid of starts.

    Args:
        form: a key of :data:`FORMS` (``power``, ``frontier``, ``m4``, ``joint``).
        x: compute ``C`` (1-D, > 0), or for ``joint`` a pair ``(N, D)`` of 1-D arrays.
        e: errors in (0, 1), one per point.
        eps0: the chance error, required by ``m4`` (``max e < eps0 ≤ 1``); ignored otherwise.
        starts: ``None`` for the law's grid (9 starts for ``power``, 144–162 otherwise); an int
            ``k`` for the ``k`` grid points of lowest objective; or an ``(m, n_params)`` array
            of starts in reported units.

    Returns:
        ``form``; ``params`` (name → value, in normalised units); ``c0`` (``n0``, ``d0`` for
        ``joint``); ``eps0``; ``converged_share``; ``n``; ``rmse_log`` (of ``log ê − log e``);
        ``spearman`` (rho of those residuals against log compute, ``log(n·d)`` for ``joint``;
        ``None`` when undefined); ``objective`` (``Σ H_δ`` at the optimum).
    """
    spec, x, e, eps0 = _check(form, x, e, eps0)
    scale = _scale(form, x)
    data = _data(form, x, e, eps0, scale)
    results = _minimise(spec, data, _starts(spec, data, starts))
    if not results:
        raise RuntimeError(f"fit: no start of the {form} law reached a finite objective")
    vals = np.array([v for v, _ in results])
    i = int(np.argmin(vals))
    share = float(np.mean(vals <= vals[i] + RTOL * abs(vals[i]) + ATOL))
    return _summarise(form, spec, data, scale, eps0, results[i][1], vals[i], share)


def _refit(form, fit_result, x, e, *, extra=()):
    """Parameters (reported units, full sample's normalisation) refitted from ``fit_result``."""
    spec = FORMS[form]
    scale = (fit_result["n0"], fit_result["d0"]) if form == "joint" else (fit_result["c0"],)
    data = _data(form, x, e, fit_result["eps0"], scale)
    starts = [[fit_result["params"][k] for k in spec.params], *extra]
    results = _minimise(spec, data, starts)
    if not results:
        return None
    return spec.natural(min(results, key=lambda r: r[0])[1])


def _logpred(form: str, fit_result: dict, params, x) -> np.ndarray:
    spec = FORMS[form]
    if form == "joint":
        n, d = (np.asarray(v, np.float64) for v in x)
        data = _Data(np.ones_like(n), np.zeros_like(n), np.zeros_like(n),
                     ln=np.log(n / fit_result["n0"]), ld=np.log(d / fit_result["d0"]))
    else:
        c = np.asarray(x, np.float64) / fit_result["c0"]
        data = _Data(np.ones_like(c), np.zeros_like(c), np.log(c), c=c, eps0=fit_result["eps0"])
    with np.errstate(all="ignore"):
        return spec.logpred(spec.internal(np.asarray(params, np.float64)), data)[0]


def predict(fit_result: dict, x) -> np.ndarray:
    """The fitted law's error at ``x``.

    Args:
        fit_result: a :func:`fit` result.
        x: compute ``C`` (raw FLOPs, any shape broadcasting to 1-D), or ``(N, D)`` for ``joint``.

    Returns:
        The predicted errors, float64, one per point.
    """
    form = fit_result["form"]
    params = [fit_result["params"][k] for k in FORMS[form].params]
    if form != "joint":
        x = np.atleast_1d(np.asarray(x, np.float64))
    return np.exp(_logpred(form, fit_result, params, x))


def _resample(rng, labels: np.ndarray) -> np.ndarray:
    """Indices of one bootstrap resample of whole groups (each point its own group if unique)."""
    uniq, inv = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(uniq.size)]
    pick = rng.integers(0, uniq.size, uniq.size)
    return np.concatenate([members[g] for g in pick])


def _take(form, x, idx):
    return (x[0][idx], x[1][idx]) if form == "joint" else x[idx]


def _distinct(form, x) -> int:
    return len(set(zip(x[0], x[1]))) if form == "joint" else np.unique(x).size


def _groups(groups, n: int, name: str = "groups") -> np.ndarray:
    if groups is None:
        return np.arange(n)
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"{name}: shape {g.shape}; expected one label per point, ({n},)")
    return g


def bootstrap(form: str, x, e, *, groups=None, n_resamples: int = 1000, seed: int = 0, eps0=None,
              levels=(0.1, 0.9), fit_result: dict | None = None) -> dict:
    """Percentile intervals of every parameter, by resampling runs (or groups) with replacement.

    Each resample draws as many groups as there are (all points of a drawn group enter, as often
    as it is drawn) and is refitted from the full-sample optimum, in the full sample's units. A
    resample with fewer distinct inputs than parameters counts as failed.

    Args:
        form, x, e, eps0: as :func:`fit`.
        groups: an int label per point (e.g. the trained trunk of each horizon); ``None``: each
            point alone.
        n_resamples: resamples drawn; ``seed``: for ``np.random.default_rng``.
        levels: the interval's lower and upper quantiles.
        fit_result: the full-sample :func:`fit` (fitted here when ``None``).

    Returns:
        ``params`` (name → ``(low, high)``), ``n_resamples``, ``failed``, ``samples`` (array of
        shape ``(n_ok, n_params)``, reported units), ``names``, ``levels``, ``fit`` (the
        full-sample fit).
    """
    spec, x, e, eps0 = _check(form, x, e, eps0)
    labels = _groups(groups, e.size)
    full = fit_result if fit_result is not None else fit(form, x, e, eps0=eps0)
    rng = np.random.default_rng(seed)
    samples, failed = [], 0
    for _ in range(int(n_resamples)):
        idx = _resample(rng, labels)
        xs = _take(form, x, idx)
        p = None if _distinct(form, xs) < len(spec.params) else _refit(form, full, xs, e[idx])
        if p is None:
            failed += 1
        else:
            samples.append(p)
    samples = np.array(samples, np.float64).reshape(-1, len(spec.params))
    q = np.quantile(samples, list(levels), axis=0) if len(samples) else np.full((2, len(spec.params)), np.nan)
    return {"params": {k: (float(q[0, j]), float(q[1, j])) for j, k in enumerate(spec.params)},
            "n_resamples": int(n_resamples), "failed": failed, "samples": samples,
            "names": spec.params, "levels": tuple(levels), "fit": full}


def band(form: str, boot: dict, fit_result: dict, x, levels=(0.1, 0.9)) -> dict:
    """Pointwise prediction band at ``x`` from a :func:`bootstrap`'s resampled parameters.

    Args:
        form: the law (must match ``fit_result["form"]``).
        boot: a :func:`bootstrap` result; ``fit_result``: the :func:`fit` it resampled.
        x: where to predict (compute, or ``(N, D)`` for ``joint``).
        levels: lower and upper quantiles of the predictions.

    Returns:
        ``fit`` (the point prediction), ``low``, ``high``, ``median`` (arrays, one per point).
    """
    if fit_result["form"] != form:
        raise ValueError(f"form: {form!r} but fit_result is a {fit_result['form']!r} fit")
    if form != "joint":
        x = np.atleast_1d(np.asarray(x, np.float64))
    preds = np.array([_logpred(form, fit_result, p, x) for p in boot["samples"]])
    point = predict(fit_result, x)
    if preds.size == 0:
        nan = np.full_like(point, np.nan)
        return {"fit": point, "low": nan, "high": nan, "median": nan}
    lo, med, hi = np.exp(np.nanquantile(preds, [levels[0], 0.5, levels[1]], axis=0))
    return {"fit": point, "low": lo, "high": hi, "median": med}
