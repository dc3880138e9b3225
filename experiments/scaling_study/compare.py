r"""What the fitted laws are good for: extrapolation checks, compute-optimal sizes, paired comparisons.

Pure NumPy and SciPy, on top of :mod:`.fits`.

* :func:`extrapolation`: fit a law on the runs of small compute (``C ≤ fraction · max C``) and
  score its predictions of the rest, ``log(ê / e)``, and how many fall inside the 10–90%
  bootstrap band of that small-compute fit (the curve's band, and the prediction band that adds
  the fit's scatter). A law that extrapolates is one that passes this.
* :func:`isoflop` (Hoffmann et al. 2022, approach 2): per compute budget, a parabola of ``log e``
  in ``log N``; its vertex is the compute-optimal size ``N_opt(C)``, and the slope of
  ``log N_opt`` against ``log C`` the exponent of ``N_opt ∝ C^a``. For
  ``e = E + A/N^α + B/D^β`` with ``D = C / (6N)``, ``a = β / (α + β)``.
* :func:`reruns`: how far a law's parameters move when the whole study is run again with new
  seeds, simulated from the seeds' own spread (a parametric bootstrap: each point's runs drawn
  again around its mean, log-normal with the spread of its stratum's seeds).
* :func:`compare`: a paired bootstrap of the difference of one parameter between two variants
  trained on matching runs (same width, horizon, seed): pairs are resampled together, both laws
  refitted, and a variant is said to scale better only when at least 95% of the resamples agree.

>>> C = np.array([1, 1, 1, 4, 4, 4]) * 1e12
>>> N = np.array([1, 2, 4, 2, 4, 8]) * 1e6
>>> e = 0.1 * np.exp(np.log(N / (1.5e6 * (C / 1e12) ** 0.5)) ** 2)
>>> [round(r["n_opt"] / 1e6, 2) for r in isoflop(C, N, e)["bins"]]
[1.5, 3.0]
"""

from __future__ import annotations

import numpy as np

from experiments.scaling_study.laws import JOINT_FORMS
from experiments.scaling_study.fits import (_check, _distinct, _groups, _logpred, _members, _refit, _resample,
                                            _runs, _take, band, bootstrap, fit, one_blas_thread, pareto, predict)


@one_blas_thread
def extrapolation(form: str, x, e, *, fraction: float = 0.25, groups=None, n_resamples: int = 1000,
                  seed: int = 0, eps0=None, compute=None, levels=(0.1, 0.9), starts=None) -> dict:
    """Fit on the points of compute ``≤ fraction · max``, predict the held-out rest.

    Args:
        form, x, e, eps0: as :func:`.fits.fit`.
        fraction: the split, a share of the largest compute.
        groups: labels for the bootstrap of the small-compute fit (see :func:`.fits.bootstrap`).
        n_resamples, seed, levels: of that bootstrap and its band.
        compute: the compute of each point for the split; required for ``joint`` and ``kaplan`` (whose ``x`` is
            ``(N, D)``), defaults to ``x`` otherwise.
        starts: of the small-compute fit, as :func:`.fits.fit`.

    Returns:
        ``median_abs_log`` and ``max_abs_log`` of ``|log(ê / e)|`` on the held-out points;
        ``inside_band``, their share inside the band of the law (:func:`.fits.band`: the fitted
        curve's uncertainty only, so single noisy runs fall outside it even when the law holds);
        ``inside_prediction_band``, their share inside that band widened by the fit's scatter
        (each resampled prediction times ``exp`` of a log residual of the small-compute fit drawn
        at random: where a new run should land); ``n_fit``, ``n_held_out``, ``fit``,
        ``bootstrap_failed``; per held-out point ``compute``, ``observed``, ``predicted``,
        ``low``, ``high``, ``prediction_low``, ``prediction_high``. Too few points to fit (fewer
        than parameters + 1, or fewer distinct inputs than parameters) or none held out:
        ``{"skipped": reason, "n_fit", "n_held_out"}``.
    """
    spec, x, e, eps0 = _check(form, x, e, eps0)
    if compute is None:
        if form in JOINT_FORMS:
            raise ValueError(f"compute: None; the {form} law's split needs each point's compute (e.g. 6·N·D)")
        compute = x
    compute = np.asarray(compute, np.float64)
    if compute.shape != e.shape or not np.all(np.isfinite(compute)) or np.any(compute <= 0):
        raise ValueError(f"compute: shape {compute.shape}; expected finite values > 0, one per point {e.shape}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction: {fraction}; expected a share of the largest compute in (0, 1)")
    small = compute <= fraction * compute.max()
    idx_fit, idx_out = np.flatnonzero(small), np.flatnonzero(~small)
    n_fit, n_out, k = idx_fit.size, idx_out.size, len(spec.params)
    distinct = _distinct(form, _take(form, x, idx_fit))
    if n_fit < k + 1 or distinct < k or n_out == 0:
        why = (f"{n_fit} points ({distinct} distinct) at compute ≤ {fraction} · max; the {form} law "
               f"needs {k + 1} ({k} distinct)" if n_out else "no point above the split")
        return {"skipped": why, "n_fit": n_fit, "n_held_out": n_out}
    labels = _groups(groups, e.size)
    part = fit(form, _take(form, x, idx_fit), e[idx_fit], eps0=eps0, starts=starts)
    boot = bootstrap(form, _take(form, x, idx_fit), e[idx_fit], groups=labels[idx_fit],
                     n_resamples=n_resamples, seed=seed, eps0=eps0, levels=levels, fit_result=part)
    held = _take(form, x, idx_out)
    bnd = band(form, boot, part, held, levels=levels)
    obs = e[idx_out]
    err = np.abs(np.log(bnd["fit"] / obs))
    # Prediction band: each resampled curve plus a log residual of the small-compute fit.
    resid = np.log(e[idx_fit] / predict(part, _take(form, x, idx_fit)))
    curves = np.array([_logpred(form, part, p, held) for p in boot["samples"]]).reshape(-1, n_out)
    noise = np.random.default_rng(seed + 1).choice(resid, size=curves.shape)
    p_lo, p_hi = (np.exp(np.quantile(curves + noise, levels, axis=0)) if curves.size
                  else (np.full(n_out, np.nan),) * 2)
    return {"median_abs_log": float(np.median(err)), "max_abs_log": float(err.max()),
            "inside_band": float(np.mean((obs >= bnd["low"]) & (obs <= bnd["high"]))),
            "inside_prediction_band": float(np.mean((obs >= p_lo) & (obs <= p_hi))),
            "n_fit": n_fit, "n_held_out": n_out, "fit": part, "bootstrap_failed": boot["failed"],
            "compute": compute[idx_out], "observed": obs, "predicted": bnd["fit"], "low": bnd["low"],
            "high": bnd["high"], "prediction_low": p_lo, "prediction_high": p_hi}


def _default_edges(compute: np.ndarray) -> np.ndarray:
    """Bins a factor 2 wide (two per factor 4), centred on ``min C · 2^j``, spanning the data."""
    lo = np.log2(compute.min())
    j = int(np.round(np.log2(compute.max()) - lo))
    return 2.0 ** (lo + np.arange(j + 2) - 0.5)


def isoflop(compute, size, e, *, bins=None) -> dict:
    """Compute-optimal size per compute budget and its power law (Chinchilla approach 2).

    Args:
        compute: each point's compute ``C`` (> 0).
        size: each point's model size ``N`` (width, parameters or MACs; > 0).
        e: each point's error in (0, 1).
        bins: ``None`` for bins a factor 2 wide centred on ``min C · 2^j``; an int for that
            many log-spaced bins from ``min C`` to ``max C``; or an increasing array of edges.
            A bin is used when it has at least 3 distinct sizes.

    Returns:
        ``bins``: rows with ``c_low``, ``c_high``, ``compute`` (geometric mean in the bin),
        ``n_points``, ``n_sizes``, ``n_opt`` (vertex of the parabola of ``log e`` in ``log N``,
        clipped to the bin's sizes), ``e_opt`` (the parabola's error there), ``curvature``,
        ``at_edge`` (vertex outside the sizes, or no minimum); ``slope`` ``a`` of
        ``log N_opt = a · log C + b`` over the bins not at an edge (``None`` with fewer than 2),
        ``slope_se`` (its standard error with 3 or more), ``intercept``, ``n_bins_used``.
    """
    e = np.asarray(e, np.float64)
    compute, size = np.asarray(compute, np.float64), np.asarray(size, np.float64)
    for name, v in (("compute", compute), ("size", size), ("e", e)):
        if v.ndim != 1 or v.size != e.size or not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"{name}: shape {v.shape}; expected finite values > 0, one per point ({e.size})")
    if np.any(e >= 1):
        raise ValueError(f"e: errors must lie in (0, 1); got max {e.max()}")
    if bins is None:
        edges = _default_edges(compute)
    elif np.ndim(bins) == 0:
        if int(bins) < 1:
            raise ValueError(f"bins: {bins}; expected a positive number of bins or an array of edges")
        edges = np.geomspace(compute.min(), compute.max() * (1 + 1e-12), int(bins) + 1)
    else:
        edges = np.asarray(bins, np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"bins: {bins!r}; expected increasing bin edges")
    which = np.searchsorted(edges, compute, side="right") - 1
    rows = []
    for j in range(edges.size - 1):
        m = which == j
        ln, le = np.log(size[m]), np.log(e[m])
        if np.unique(ln).size < 3:
            continue
        p2, p1, p0 = np.polyfit(ln, le, 2)
        lo, hi = ln.min(), ln.max()
        if p2 > 0:
            v = -p1 / (2 * p2)
            at_edge, v = bool(v < lo or v > hi), float(np.clip(v, lo, hi))
        else:
            at_edge, v = True, float(lo if np.polyval((p2, p1, p0), lo) <= np.polyval((p2, p1, p0), hi) else hi)
        rows.append({"c_low": float(edges[j]), "c_high": float(edges[j + 1]),
                     "compute": float(np.exp(np.log(compute[m]).mean())), "n_points": int(m.sum()),
                     "n_sizes": int(np.unique(ln).size), "n_opt": float(np.exp(v)),
                     "e_opt": float(np.exp(np.polyval((p2, p1, p0), v))), "curvature": float(p2),
                     "at_edge": at_edge})
    used = [r for r in rows if not r["at_edge"]]
    out = {"bins": rows, "slope": None, "slope_se": None, "intercept": None, "n_bins_used": len(used)}
    if len(used) >= 2:
        lc, ln = np.log([r["compute"] for r in used]), np.log([r["n_opt"] for r in used])
        if np.ptp(lc) > 0:
            if len(used) >= 3:
                (a, b), cov = np.polyfit(lc, ln, 1, cov=True)
                out["slope_se"] = float(np.sqrt(cov[0, 0]))
            else:
                a, b = np.polyfit(lc, ln, 1)
            out["slope"], out["intercept"] = float(a), float(b)
    return out


def _stratum_spread(runs: list[np.ndarray], strata: np.ndarray) -> dict:
    """Per stratum, the root mean square over its points of several runs of the sample standard
    deviation of their log errors; a stratum with none takes the nearest stratum's (in log)."""
    var = {}
    for s in np.unique(strata):
        v = [np.var(np.log(r), ddof=1) for r, t in zip(runs, strata) if t == s and r.size > 1]
        if v:
            var[s] = float(np.sqrt(np.mean(v)))
    if not var:
        return {}
    known = np.array(sorted(var))
    return {s: var[known[np.argmin(np.abs(np.log(known) - np.log(s)))]] for s in np.unique(strata)}


@one_blas_thread
def reruns(form: str, x, runs, strata, *, frontier: bool = True, n_resamples: int = 1000, seed: int = 0,
           eps0=None, levels=(0.1, 0.9), starts=None) -> dict:
    """Each parameter's spread over simulated reruns of the study with new seeds.

    The points' means are taken as the truth. A rerun draws, for every point, as many runs as it
    had, ``e · exp(σ z)`` with ``z`` standard normal and ``σ`` the seeds' spread of log error in
    the point's stratum (e.g. its horizon: root mean square over the stratum's points of several
    runs; a stratum without any takes the nearest one's, in log); takes the mean, the compute
    frontier with ``frontier``, and refits from the fit to the means. Where :func:`.fits.bootstrap`
    asks how well these points pin a law, this asks what a second run of the same design would
    give.

    Args:
        form, x, eps0: as :func:`.fits.fit` (a law of compute).
        runs: per point, its runs' errors (their mean is the point's error).
        strata: a label per point (> 0, e.g. the horizon), whose points share one spread.
        frontier: fit each rerun's compute frontier.
        n_resamples, seed: reruns drawn (``np.random.default_rng(seed)``); ``levels``: quantiles.
        starts: of the fit to the means, as :func:`.fits.fit`.

    Returns:
        ``fit`` (to the means' frontier), ``params`` (name → ``(low, median, high)`` over the
        reruns), ``samples``, ``failed``, ``sigma`` (stratum → spread) and ``n_resamples``;
        ``{"skipped": reason}`` when no point has two runs.
    """
    if form in JOINT_FORMS:
        raise ValueError(f"form: {form!r}; reruns are drawn for a law of compute, one of power, frontier, m4")
    runs = [np.asarray(r, np.float64).ravel() for r in runs]
    for i, r in enumerate(runs):
        if r.size == 0 or not np.all((r > 0) & (r < 1)):
            raise ValueError(f"runs[{i}]: {r.tolist()}; expected one or more run errors in (0, 1)")
    e = np.array([r.mean() for r in runs])
    spec, x, e, eps0 = _check(form, x, e, eps0)
    runs, strata = _runs(runs, e), np.asarray(strata, np.float64)
    if strata.shape != e.shape or not np.all(strata > 0):
        raise ValueError(f"strata: shape {strata.shape}; expected a label > 0 per point {e.shape}")
    sigma = _stratum_spread(runs, strata)
    if not sigma:
        return {"skipped": "no point has two runs", "n_resamples": int(n_resamples)}
    sd = np.array([sigma[s] for s in strata])
    counts = np.array([r.size for r in runs])
    front = np.flatnonzero(pareto(np.stack([x, e], 1))) if frontier else slice(None)
    full = fit(form, x[front], e[front], eps0=eps0, starts=starts)
    rng = np.random.default_rng(seed)
    samples, failed = [], 0
    for _ in range(int(n_resamples)):
        es = np.array([m * np.exp(rng.normal(0.0, s, k)).mean() for m, s, k in zip(e, sd, counts)])
        es = np.clip(es, 1e-6, 1 - 1e-6)
        keep = np.flatnonzero(pareto(np.stack([x, es], 1))) if frontier else np.arange(e.size)
        ok = np.unique(x[keep]).size >= len(spec.params) and (eps0 is None or es[keep].max() < eps0)
        p = _refit(form, full, x[keep], es[keep]) if ok else None
        if p is None:
            failed += 1
        else:
            samples.append(p)
    samples = np.array(samples, np.float64).reshape(-1, len(spec.params))
    q = (np.quantile(samples, [levels[0], 0.5, levels[1]], axis=0) if len(samples)
         else np.full((3, len(spec.params)), np.nan))
    return {"fit": full, "params": {k: tuple(float(v) for v in q[:, j]) for j, k in enumerate(spec.params)},
            "samples": samples, "failed": failed, "sigma": {float(k): v for k, v in sigma.items()},
            "n_resamples": int(n_resamples), "levels": tuple(levels)}


@one_blas_thread
def compare(form: str, param: str, x_a, e_a, x_b, e_b, *, pairs, n_resamples: int = 1000, seed: int = 0,
            eps0=None, higher_is_better: bool = True, names=("a", "b"), groups=None, starts=None) -> dict:
    """Paired bootstrap of ``θ_a − θ_b`` for one parameter of one law, fitted to two variants.

    Args:
        form: the law; ``param``: one of its parameters (e.g. ``"b"``, the exponent).
        x_a, e_a, x_b, e_b: the two variants' data, as :func:`.fits.fit` takes them.
        pairs: ``(index into a, index into b)`` per matching run (same width, horizon, seed);
            only paired points are resampled, so pair every point.
        n_resamples, seed: of the bootstrap (``np.random.default_rng(seed)``).
        eps0: for ``m4``.
        higher_is_better: whether a larger ``param`` means better scaling (``b``: yes; ``e_inf``: no).
        names: the variants' display names in the verdict.
        groups: optional label per pair, to resample whole groups of pairs (e.g. one trunk's horizons).
        starts: of the two full-data fits, as :func:`.fits.fit`.

    Returns:
        ``difference`` (``θ_a − θ_b`` from fits on all of a and of b), ``theta_a``, ``theta_b``,
        ``interval`` (10–90% of the resampled differences), ``p_a_better`` (share of the
        resamples refitted without failure with ``θ_a`` better), ``verdict`` (``"<a> scales
        better"`` when that share is ≥ 0.95, ``"<b> scales better"`` when ≤ 0.05, else ``"not
        distinguishable"``), ``n_resamples``, ``failed`` (resamples with fewer distinct inputs
        than parameters), ``names``.
    """
    spec, x_a, e_a, eps0 = _check(form, x_a, e_a, eps0)
    if param not in spec.params:
        raise ValueError(f"param: {param!r} is not a parameter of the {form} law; expected one of {spec.params}")
    _, x_b, e_b, _ = _check(form, x_b, e_b, eps0)
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0 or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"pairs: shape {p.shape}; expected (m, 2) integer (index into a, index into b)")
    if p[:, 0].min() < 0 or p[:, 0].max() >= e_a.size or p[:, 1].min() < 0 or p[:, 1].max() >= e_b.size:
        raise ValueError(f"pairs: indices outside a ({e_a.size} points) or b ({e_b.size} points)")
    members = _members(_groups(groups, p.shape[0], "pair"))
    j = spec.params.index(param)
    fa, fb = fit(form, x_a, e_a, eps0=eps0, starts=starts), fit(form, x_b, e_b, eps0=eps0, starts=starts)
    rng = np.random.default_rng(seed)
    diffs, failed = [], 0
    for _ in range(int(n_resamples)):
        idx = _resample(rng, members)
        ia, ib = p[idx, 0], p[idx, 1]
        xa, xb, k = _take(form, x_a, ia), _take(form, x_b, ib), len(spec.params)
        ok = _distinct(form, xa) >= k and _distinct(form, xb) >= k
        ta = _refit(form, fa, xa, e_a[ia]) if ok else None
        tb = _refit(form, fb, xb, e_b[ib]) if ok else None
        if ta is None or tb is None:
            failed += 1
        else:
            diffs.append(ta[j] - tb[j])
    diffs = np.array(diffs)
    better = np.mean(diffs > 0 if higher_is_better else diffs < 0) if diffs.size else np.nan
    verdict = ("not distinguishable" if not np.isfinite(better) or 0.05 < better < 0.95
               else f"{names[0] if better >= 0.95 else names[1]} scales better")
    ta, tb = fa["params"][param], fb["params"][param]
    return {"difference": ta - tb, "theta_a": ta, "theta_b": tb,
            "interval": tuple(map(float, np.quantile(diffs, [0.1, 0.9]))) if diffs.size else (np.nan, np.nan),
            "p_a_better": float(better), "verdict": verdict, "n_resamples": int(n_resamples), "failed": failed,
            "names": tuple(names)}
