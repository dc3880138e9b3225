r"""Scaling laws fitted as the careful studies fit them: one robust estimator, many starts, a bootstrap.

Pure NumPy and SciPy. Error ``e`` is ``1 − accuracy`` in (0, 1); compute ``C`` is training
FLOPs. Inputs are normalised by their smallest value for conditioning (``c = C / c0``, and
``n = N / n0``, ``d = D / d0`` for the joint law); every parameter is reported in those units.
The laws (:data:`FORMS`, defined in :mod:`.laws`): ``power`` ``e = a · c^(−b)``; ``frontier``
``e = e∞ + a · (c + d)^(−b)`` (Zhai et al. 2022); ``m4`` ``(e − e∞) / (ε₀ − e)^α = β · c^(−γ)``
(Alabdulmohsin et al. 2022, ``ε₀`` the chance error); ``joint`` ``e = E + A / n^α + B / d^β``
(Hoffmann et al. 2022; ``N`` parameters or MACs per image, ``D`` samples seen); ``kaplan``
``e = E + (A / n^α + B / d)^β`` (Kaplan et al. 2020).

**Estimator** (Hoffmann et al. 2022, approach 3). With ``r_i = log ê_i − log e_i``, minimise
``Σ_i H_δ(r_i)``, ``H_δ(r) = r²/2`` for ``|r| ≤ δ`` and ``δ (|r| − δ/2)`` beyond, ``δ = 10⁻³``
(for residuals of a few percent a least-absolute-deviation fit in ``log e``, robust to outliers).
L-BFGS-B with analytic gradients works on ``log a``, ``log β``, ``log(1 + d)`` and the LSE form,
with bounds where a parameter must be bounded, from every point of a grid of starts
(``itertools.product`` of a few values per parameter); the best optimum is the estimate, and
``converged_share`` the share of starts that ended within ``10⁻⁶`` (relative) of it.

**Uncertainty.** :func:`bootstrap` resamples points (or whole groups of points, e.g. every
horizon of one trained trunk) with replacement and, where a point is the mean of several runs
(seeds), that point's runs as well; for a law of the compute frontier it takes each resample's
frontier again (:func:`pareto`). Each resample is refitted from the full-sample optimum in the
full sample's units, giving percentile intervals (10–90% by default) of every parameter;
:func:`band` turns the resampled parameters into a pointwise prediction band.

>>> c = np.geomspace(1e9, 1e12, 12)
>>> r = fit("frontier", c, 0.05 + 0.6 * (c / 1e9) ** -0.4)
>>> {k: round(v, 3) for k, v in r["params"].items()}, r["c0"]
({'e_inf': 0.05, 'a': 0.6, 'b': 0.4, 'd': 0.0}, 1000000000.0)
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from scipy import optimize, stats

from experiments.scaling_study.laws import FORMS, JOINT_FORMS, Form, Data

try:  # scikit-learn's dependency; absent, BLAS keeps its threads
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

DELTA = 1e-3  # Huber threshold on log residuals
RTOL, ATOL = 1e-6, 1e-12  # a start "converged" when its objective is this close to the best
_OPTIONS = {"maxiter": 3000, "ftol": 1e-12, "gtol": 1e-8}


def one_blas_thread(fn):
    """Run ``fn`` with BLAS on one thread: SciPy's L-BFGS-B (C since 1.15) makes tiny BLAS calls
    that a multi-threaded OpenBLAS slows 10–100× on a busy machine (scipy/scipy#22438)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if threadpool_limits is None:
            return fn(*args, **kwargs)
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


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
    e = np.asarray(e, dtype=np.float64)
    if e.ndim != 1 or e.size == 0:
        raise ValueError(f"e: shape {e.shape}; expected a non-empty 1-D sequence of errors")
    if not np.all(np.isfinite(e)) or np.any(e <= 0) or np.any(e >= 1):
        raise ValueError(f"e: errors must lie in (0, 1) (1 − accuracy); got min {e.min()}, max {e.max()}")
    if form in JOINT_FORMS:
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise ValueError(f"x: expected a pair (N, D) of 1-D arrays for the {form} law; got {type(x).__name__}")
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
    return (float(x[0].min()), float(x[1].min())) if form in JOINT_FORMS else (float(np.min(x)),)


def _data(form: str, x, e, eps0, scale) -> Data:
    if form in JOINT_FORMS:
        ln, ld = np.log(x[0] / scale[0]), np.log(x[1] / scale[1])
        return Data(e, np.log(e), ln + ld, ln=ln, ld=ld, eps0=eps0)
    c = x / scale[0]
    return Data(e, np.log(e), np.log(c), c=c, eps0=eps0)


def _scale_keys(form: str, scale) -> dict:
    return {"n0": scale[0], "d0": scale[1]} if form in JOINT_FORMS else {"c0": scale[0]}


# --- the estimator ----------------------------------------------------------------------------

def _objective(spec: Form, data: Data):
    def f(th):
        lp, jac = spec.logpred(th, data)
        r = lp - data.le
        a = np.abs(r)
        val = np.sum(np.where(a <= DELTA, 0.5 * r * r / DELTA, a - 0.5 * DELTA))  # Σ H_δ / δ
        if not np.isfinite(val):
            return 1e100, np.zeros_like(th)
        return val, jac.T @ (np.clip(r, -DELTA, DELTA) / DELTA)
    return f


def _minimise(spec: Form, data: Data, starts) -> list[tuple[float, np.ndarray]]:
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


def _starts(spec: Form, data: Data, starts):
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
    with np.errstate(all="ignore"):
        r = spec.logpred(theta, data)[0] - data.le
    rho = None
    if r.size >= 3 and np.ptp(r) > 0 and np.ptp(data.lc) > 0:
        rho = float(stats.spearmanr(r, data.lc)[0])
    return {"form": form, "params": dict(zip(spec.params, map(float, spec.natural(theta)))),
            **_scale_keys(form, scale), "eps0": eps0, "converged_share": share, "n": int(r.size),
            "rmse_log": float(np.sqrt(np.mean(r * r))), "spearman": rho, "objective": best * DELTA}


@one_blas_thread
def fit(form: str, x, e, *, eps0=None, starts=None) -> dict:
    """Fit one law by the Huber estimator from a grid of starts.

    Args:
        form: a key of :data:`FORMS` (``power``, ``frontier``, ``m4``, ``joint``).
        x: compute ``C`` (1-D, > 0), or for ``joint`` and ``kaplan`` a pair ``(N, D)`` of 1-D arrays.
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


def _refit(form, fit_result, x, e):
    """Parameters (reported units, full sample's normalisation) refitted from ``fit_result``."""
    spec = FORMS[form]
    scale = (fit_result["n0"], fit_result["d0"]) if form in JOINT_FORMS else (fit_result["c0"],)
    results = _minimise(spec, _data(form, x, e, fit_result["eps0"], scale),
                        [[fit_result["params"][k] for k in spec.params]])
    return spec.natural(results[0][1]) if results else None


def _logpred(form: str, fit_result: dict, params, x) -> np.ndarray:
    spec = FORMS[form]
    if form in JOINT_FORMS:
        n, d = (np.asarray(v, np.float64) for v in x)
        data = Data(np.ones_like(n), np.zeros_like(n), np.zeros_like(n),
                    ln=np.log(n / fit_result["n0"]), ld=np.log(d / fit_result["d0"]))
    else:
        c = np.asarray(x, np.float64) / fit_result["c0"]
        data = Data(np.ones_like(c), np.zeros_like(c), np.log(c), c=c, eps0=fit_result["eps0"])
    with np.errstate(all="ignore"):
        return spec.logpred(spec.internal(np.asarray(params, np.float64)), data)[0]


def predict(fit_result: dict, x) -> np.ndarray:
    """The fitted law's error at ``x``.

    Args:
        fit_result: a :func:`fit` result.
        x: compute ``C`` (FLOPs, a scalar or 1-D), or ``(N, D)`` (1-D each) for ``joint`` and ``kaplan``.

    Returns:
        The predicted errors, float64, one per point.
    """
    form = fit_result["form"]
    params = [fit_result["params"][k] for k in FORMS[form].params]
    if form not in JOINT_FORMS:
        x = np.atleast_1d(np.asarray(x, np.float64))
    return np.exp(_logpred(form, fit_result, params, x))


def _members(labels: np.ndarray) -> list[np.ndarray]:
    """The indices of each group's points."""
    inv = np.unique(labels, return_inverse=True)[1].ravel()
    return [np.flatnonzero(inv == g) for g in range(inv.max() + 1)]


def _resample(rng, members: list[np.ndarray]) -> np.ndarray:
    """Indices of one bootstrap resample: as many groups as there are, drawn with replacement."""
    return np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def _take(form, x, idx):
    return (x[0][idx], x[1][idx]) if form in JOINT_FORMS else x[idx]


def _distinct(form, x) -> int:
    return len(set(zip(x[0], x[1]))) if form in JOINT_FORMS else np.unique(x).size


def pareto(points) -> list[bool]:
    """Which ``(cost, error)`` points no other point beats (both ≤, one strictly less).

    >>> pareto([(1, 0.5), (2, 0.4), (2, 0.6), (4, 0.4)])
    [True, True, False, False]
    """
    p = np.asarray(points, np.float64).reshape(-1, 2)
    c, e = p[:, :1], p[:, 1:]
    beats = (c.T <= c) & (e.T <= e) & ((c.T < c) | (e.T < e))  # [i, j]: point j beats point i
    return (~beats.any(axis=1)).tolist()


def _runs(runs, e: np.ndarray) -> list[np.ndarray] | None:
    """Validated per-point run errors, each point's mean its ``e``."""
    if runs is None:
        return None
    if len(runs) != e.size:
        raise ValueError(f"runs: {len(runs)} entries; expected one sequence of run errors per point ({e.size})")
    out = []
    for i, r in enumerate(runs):
        r = np.asarray(r, np.float64).ravel()
        if r.size == 0 or not np.all((r >= 0) & (r <= 1)) or not np.isclose(r.mean(), e[i], rtol=0, atol=1e-6):
            raise ValueError(f"runs[{i}]: {r.tolist()}; expected the point's run errors in [0, 1], "
                             f"whose mean is its e = {e[i]:.6g}")
        out.append(r)
    return out


def _redraw(rng, runs: list[np.ndarray] | None, e: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The drawn points' errors: each the mean of its runs drawn again with replacement."""
    if runs is None:
        return e[idx]
    means = np.array([runs[i][rng.integers(0, runs[i].size, runs[i].size)].mean() for i in idx])
    return np.clip(means, 1e-6, 1 - 1e-6)


def _groups(groups, n: int, per: str = "point") -> np.ndarray:
    if groups is None:
        return np.arange(n)
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"groups: shape {g.shape}; expected one label per {per}, ({n},)")
    return g


@one_blas_thread
def bootstrap(form: str, x, e, *, groups=None, runs=None, frontier: bool = False, n_resamples: int = 1000,
              seed: int = 0, eps0=None, levels=(0.1, 0.9), fit_result: dict | None = None) -> dict:
    """Percentile intervals of every parameter, by resampling points (or groups) with replacement,
    and each point's runs.

    Each resample draws as many groups as there are (all points of a drawn group enter, as often
    as it is drawn); with ``runs``, each drawn point's error is the mean of its runs drawn again
    with replacement (a point of one run keeps its error); with ``frontier``, only the resample's
    compute frontier is fitted. It is refitted from the full-sample optimum, in the full sample's
    units. A resample with fewer distinct inputs than parameters counts as failed.

    Args:
        form, x, e, eps0: as :func:`fit`.
        groups: an int label per point (e.g. the trained trunk of each horizon); ``None``: each
            point alone.
        runs: per point, the errors of the runs (seeds) whose mean is its ``e``; ``None``: each
            point one run. Seeds differ most where a law is fitted to few points, so an interval
            without them is too narrow.
        frontier: fit the points no other point beats in compute and error (:func:`pareto`), of
            the full sample and of each resample (laws of compute only).
        n_resamples: resamples drawn; ``seed``: for ``np.random.default_rng``.
        levels: the interval's lower and upper quantiles.
        fit_result: the full-sample :func:`fit` (fitted here when ``None``, to the frontier
            with ``frontier``).

    Returns:
        ``params`` (name → ``(low, high)``), ``n_resamples``, ``failed``, ``samples`` (array of
        shape ``(n_ok, n_params)``, reported units), ``names``, ``levels``, ``fit`` (the
        full-sample fit).
    """
    spec, x, e, eps0 = _check(form, x, e, eps0)
    members = _members(_groups(groups, e.size))
    runs = _runs(runs, e)
    if frontier and form in JOINT_FORMS:
        raise ValueError(f"frontier: True; the {form} law is fitted to every run, not to a compute frontier")
    if fit_result is not None and fit_result["form"] != form:
        raise ValueError(f"fit_result: a {fit_result['form']!r} fit; expected a {form!r} fit")
    if fit_result is None:
        front = np.flatnonzero(pareto(np.stack([x, e], 1))) if frontier else slice(None)
        fit_result = fit(form, _take(form, x, front), e[front], eps0=eps0)
    full = fit_result
    rng, run_rng = np.random.default_rng(seed), np.random.default_rng((seed, 1))  # points, seeds
    samples, failed = [], 0
    for _ in range(int(n_resamples)):
        idx = _resample(rng, members)
        es = _redraw(run_rng, runs, e, idx)
        if frontier:
            keep = np.flatnonzero(pareto(np.stack([x[idx], es], 1)))
            idx, es = idx[keep], es[keep]
        xs = _take(form, x, idx)
        p = None if _distinct(form, xs) < len(spec.params) else _refit(form, full, xs, es)
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
    if form not in JOINT_FORMS:
        x = np.atleast_1d(np.asarray(x, np.float64))
    preds = np.array([_logpred(form, fit_result, p, x) for p in boot["samples"]])
    point = predict(fit_result, x)
    if preds.size == 0:
        nan = np.full_like(point, np.nan)
        return {"fit": point, "low": nan, "high": nan, "median": nan}
    lo, med, hi = np.exp(np.nanquantile(preds, [levels[0], 0.5, levels[1]], axis=0))
    return {"fit": point, "low": lo, "high": hi, "median": med}
