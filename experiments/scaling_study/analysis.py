"""What the scaling study computes from its runs: seed statistics, Pareto frontiers, fitted laws.

Pure NumPy and SciPy on the study's records; nothing here trains or times.

Error is ``1 − test accuracy``. Compute ``C`` is the total training FLOPs of a run, ``6 · MACs
per image · steps · batch`` (forward 2 FLOPs per MAC, backward twice the forward). Every run of
the width sweep has the same steps and batch, so ``C`` is MACs per image times one constant and
an exponent in ``C`` is the same as in MACs per image.

**Fitted laws.** For each (model, variant), three forms are fitted to the error of every run
(all widths, all seeds), with ``c = C / C₀`` (``C₀`` the smallest compute of the sweep):

* ``flat``: ``e = e∞`` (the error does not depend on compute);
* ``power``: ``e = a · c^(−b)`` (a straight line in log-log);
* ``power+floor``: ``e = a · c^(−b) + e∞`` (``a ≥ 0``, ``0 ≤ b ≤ 10``, ``0 < e∞ ≤ 1``).

All are least squares on ``log e`` (relative errors weigh alike at every compute), and each
is scored by the small-sample Akaike criterion on those residuals
(``AICc = n·ln(RSS/n) + 2k + 2k(k+1)/(n−k−1)``, ``k`` its parameters); the form with the lowest
is the one the data supports, unless a parameter of ``power+floor`` ends on its bound (an
exponent of 10 is a step, not a law; a floor of 0 is the plain power law), which leaves its
covariance meaningless: that fit is kept, marked ``at_bound``, and not chosen. The exponent's
uncertainty is its standard error from the fit's
covariance (residual variance scaled) and the 95% interval ``b ± t₀.₉₇₅(n−k) · se``.

>>> law = fit_laws([1, 1, 4, 4, 16, 16], [0.5, 0.52, 0.25, 0.26, 0.125, 0.13])
>>> law["best"], round(law["forms"]["power"]["b"], 2)
('power', 0.5)
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import defaultdict

import numpy as np
from scipy import optimize, stats

FORMS = ("flat", "power", "power+floor")


def error(record: dict) -> float | None:
    acc = record.get("test_accuracy")
    return None if acc is None else 1.0 - acc


def group(records: list[dict], part: str, by: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Records of ``part`` grouped by the key fields ``by``, in sorted order."""
    groups = defaultdict(list)
    for r in records:
        if r["key"]["part"] == part:
            groups[tuple(r["key"][k] for k in by)].append(r)
    return dict(sorted(groups.items()))


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def aggregate(records: list[dict]) -> list[dict]:
    """One row per (model, variant, width) of the width sweep: the spread over seeds.

    Accuracy, loss and error are mean, std (n − 1), min and max over the seeds that finished
    without diverging; throughput is the median images/s.
    """
    rows = []
    for (model, variant, width), runs in group(records, "scaling", ("model", "variant", "width")).items():
        done = [r for r in runs if r.get("test_accuracy") is not None]
        row = {"model": model, "variant": variant, "width": width, "seeds": len(runs),
               "diverged": len(runs) - len(done), "macs": runs[0]["macs"], "params": runs[0]["params"],
               "train_flops": runs[0].get("train_flops")}
        if done:
            row["accuracy"] = _spread([r["test_accuracy"] for r in done])
            row["loss"] = _spread([r["test_loss"] for r in done])
            row["error"] = _spread([error(r) for r in done])
            row["final_train_loss"] = _spread([r["final_loss"] for r in done])
        ips = [r["images_per_s"] for r in done if r.get("images_per_s")]
        row["images_per_s"] = statistics.median(ips) if ips else None
        row["gflops_per_s"] = None if not ips else 6 * row["macs"] * row["images_per_s"] / 1e9
        rows.append(row)
    return rows


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """Which ``(cost, error)`` points no other point beats: ``True`` where none has both cost ≤
    and error ≤ with one of them strictly less.

    >>> pareto([(1, 0.5), (2, 0.4), (2, 0.6), (4, 0.4)])
    [True, True, False, False]
    """
    def beaten(c, e):
        return any(c2 <= c and e2 <= e and (c2 < c or e2 < e) for c2, e2 in points)

    return [not beaten(c, e) for c, e in points]


def _aicc(log_residuals: np.ndarray, k: int) -> float:
    n = log_residuals.size
    rss = max(float(np.sum(log_residuals ** 2)), 1e-300)
    return n * math.log(rss / n) + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)


def _summary(name, params, cov, log_e, log_pred, e, pred, k, b_index=None) -> dict:
    n = e.size
    out = {"form": name, "k": k, "n": n, "aicc": _aicc(log_e - log_pred, k),
           "rmse": float(np.sqrt(np.mean((e - pred) ** 2))),
           "r2": float(1 - np.sum((e - pred) ** 2) / np.sum((e - e.mean()) ** 2)) if np.ptp(e) > 0 else None,
           **params}
    if b_index is not None:
        se = float(np.sqrt(cov[b_index, b_index])) if np.all(np.isfinite(cov)) else math.inf
        half = stats.t.ppf(0.975, n - k) * se if n > k else math.inf
        out.update(b_se=se, b_low=out["b"] - half, b_high=out["b"] + half)
    return out


def fit_laws(compute, errors) -> dict:
    """The three forms of the module docstring fitted to ``errors`` (in (0, 1]) at ``compute``.

    Returns ``{"c0": C₀, "forms": {form: fit}, "best": form}``; a fit has its parameters
    (``a``, ``b``, ``e_inf`` as it has them), ``aicc``, ``rmse``, ``r2`` (on the error), and for
    the power forms ``b_se``, ``b_low``, ``b_high``. A form that cannot be fitted is left out.
    """
    compute = np.asarray(compute, np.float64)
    e = np.clip(np.asarray(errors, np.float64), 1e-6, None)
    if compute.shape != e.shape or compute.size < 3:
        raise ValueError(f"fit_laws: compute and errors of shapes {compute.shape}, {e.shape}; "
                         "expected two 1-D sequences of the same length, at least 3")
    c0 = float(compute.min())
    c, log_e = compute / c0, np.log(e)
    forms = {}
    level = float(log_e.mean())
    forms["flat"] = _summary("flat", {"e_inf": math.exp(level)}, None, log_e, np.full_like(e, level),
                             e, np.full_like(e, math.exp(level)), 1)
    if np.ptp(np.log(c)) > 0:
        (slope, intercept), cov = np.polyfit(np.log(c), log_e, 1, cov="unscaled")
        resid = log_e - (intercept + slope * np.log(c))
        dof = max(e.size - 2, 1)
        cov = cov * float(np.sum(resid ** 2)) / dof
        a, b = math.exp(intercept), -slope
        forms["power"] = _summary("power", {"a": a, "b": b}, cov, log_e, np.log(a * c ** -b),
                                  e, a * c ** -b, 2, b_index=0)
        try:
            p0 = (max(e.max() - e.min(), 1e-3), min(max(b, 0.1), 9.0), max(e.min() * 0.5, 1e-3))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                params, cov3 = optimize.curve_fit(lambda x, a, b, f: np.log(a * x ** -b + f), c, log_e,
                                                  p0=p0, bounds=([0, 0, 1e-6], [np.inf, 10, 1]),
                                                  maxfev=20000)
            a3, b3, f3 = map(float, params)
            pred = a3 * c ** -b3 + f3
            forms["power+floor"] = _summary("power+floor", {"a": a3, "b": b3, "e_inf": f3}, cov3,
                                            log_e, np.log(pred), e, pred, 3, b_index=1)
            # On a bound (b = 10: a step; e∞ at 0 or 1) the covariance means nothing.
            forms["power+floor"]["at_bound"] = bool(b3 > 9.99 or f3 < 1e-5 or f3 > 0.9999)
        except (RuntimeError, ValueError):
            pass
    best = min((f for f in forms if not forms[f].get("at_bound")), key=lambda f: forms[f]["aicc"])
    return {"c0": c0, "forms": forms, "best": best}


def laws(records: list[dict]) -> dict[tuple[str, str], dict]:
    """:func:`fit_laws` per (model, variant) of the width sweep, on every finished run."""
    out = {}
    for (model, variant), runs in group(records, "scaling", ("model", "variant")).items():
        done = [r for r in runs if r.get("test_accuracy") is not None]
        if len({r["key"]["width"] for r in done}) >= 2 and len(done) >= 3:
            out[(model, variant)] = fit_laws([r["train_flops"] for r in done], [error(r) for r in done])
    return out


def controls(records: list[dict]) -> list[dict]:
    """One row per (variant, treatment) of the Type 2.1 comparison: the spread over seeds."""
    rows = []
    for (variant, treatment), runs in group(records, "controls", ("variant", "treatment")).items():
        done = [r for r in runs if r.get("test_accuracy") is not None]
        row = {"variant": variant, "treatment": treatment, "seeds": len(runs),
               "diverged": len(runs) - len(done)}
        if done:
            row["accuracy"] = _spread([r["test_accuracy"] for r in done])
            row["final_train_loss"] = _spread([r["final_loss"] for r in done])
        rows.append(row)
    return rows
