"""What the scaling study computes from its runs: the runs at their chosen rates, the laws with
their bootstrap intervals and extrapolation scores, IsoFLOP optima, paired comparisons of variants
and the study's targets.

Pure NumPy and SciPy on the study's records (:mod:`.fits`, :mod:`.compare` fit the laws);
nothing here trains or times.

Error is ``1 − test accuracy``. Compute ``C`` of a run is XLA's FLOP count of its compiled train
step (oneDNN off) times its steps; ``N`` its parameters; ``D`` the training images it saw (each
once). A run at horizon ``h`` is one branch of a trunk (``.runs``); its wall time is the trunk's
time up to the branch point plus the branch's.

**Laws per (model, variant).** The compute frontier (the runs no other run beats in both compute
and error) is fitted with the ``power``, ``frontier`` (Zhai et al.) and ``m4`` (Alabdulmohsin et
al., with the chance error as ``ε₀``) forms; every run with the ``joint`` law ``E + A/N^α + B/D^β``
(Hoffmann et al., approach 3) and the ``kaplan`` law ``E + (A/N^α + B/D)^β`` (Kaplan et al. 2020,
whose size and data terms interact; bootstrap groups of both: the horizons of one trunk move
together). A form is
chosen by how it extrapolates: fitted on the runs of compute ``≤ ¼`` of the largest, the lowest
median ``|log(ê/e)|`` on the rest wins.

>>> pareto([(1, 0.5), (2, 0.4), (2, 0.6), (4, 0.4)])
[True, True, False, False]
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

import numpy as np

from experiments.scaling_study import compare, fits
from experiments.scaling_study.fits import pareto
from experiments.scaling_study.laws import JOINT_FORMS

FRONTIER_FORMS = ("power", "frontier", "m4")
EXPONENT = {"power": "b", "frontier": "b", "m4": "gamma"}


def error(record: dict) -> float | None:
    acc = record.get("test_accuracy")
    return None if acc is None else 1.0 - acc


def group(records: list[dict], part: str, by: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Records of ``part`` grouped by the key fields ``by``, in sorted order."""
    groups = defaultdict(list)
    for r in records:
        if r["key"]["part"] == part:
            groups[tuple(r["key"][k] for k in by)].append(r)
    return dict(sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))))


def _choose(sweep: list[dict]) -> float | None:
    from experiments.scaling_study.runs import choose_lr

    return choose_lr(sweep)


RUN = ("model", "variant", "width", "seed", "horizon")


def chosen_lrs(records: list[dict]) -> dict[tuple, float | None]:
    """The rate chosen for each (model, variant, width, seed, horizon): the best of those run there."""
    return {k: _choose(v) for k, v in group(records, "scaling", RUN).items()}


def runs(records: list[dict], part: str = "scaling") -> list[dict]:
    """One row per run of ``part`` (of ``scaling``: at its horizon's chosen rate): key fields,
    cost, error and wall time (its own rate's trunk to the branch point, and the branch)."""
    costs = {(r["key"]["model"], r["key"]["variant"], r["key"]["width"], r["key"].get("treatment")): r
             for r in records if r["key"]["part"] == "cost"}
    lrs = chosen_lrs(records) if part == "scaling" else {}
    trunk_time = defaultdict(float)
    rows = []
    for r in sorted((r for r in records if r["key"]["part"] == part),
                    key=lambda r: tuple(map(str, (r["key"]["model"], r["key"]["variant"], r["key"]["width"],
                                                  r["key"]["seed"], r["key"].get("treatment"))))
                    + (r["key"]["horizon"], r["key"]["lr"])):
        k = r["key"]
        trunk = (k["model"], k["variant"], k["width"], k["seed"], k.get("treatment"))
        trunk_time[trunk, k["lr"]] += r.get("trunk_s") or 0.0
        if part == "scaling" and lrs.get(tuple(k[f] for f in RUN)) != k["lr"]:
            continue
        cost = costs.get((k["model"], k["variant"], k["width"], k.get("treatment")), {})
        step_flops = cost.get("step_flops")
        rows.append({**{f: k.get(f) for f in ("model", "variant", "width", "seed", "lr", "horizon", "treatment")},
                     "params": cost.get("params"), "macs": cost.get("macs"),
                     "train_flops": None if step_flops is None else step_flops * k["horizon"],
                     "cost_model_flops": (cost["cost_model_step_flops"] * k["horizon"]
                                          if "cost_model_step_flops" in cost else None),
                     "samples": r.get("samples"), "error": error(r), "test_loss": r.get("test_loss"),
                     "val_error": r.get("val_error"), "final_loss": r.get("final_loss"),
                     "diverged": r.get("diverged"), "images_per_s": r.get("images_per_s"),
                     "wall_s": trunk_time[trunk, k["lr"]] + (r.get("branch_s") or 0.0),
                     "trunk": "/".join(map(str, trunk))})
    return rows


def sweep(records: list[dict]) -> list[dict]:
    """Every rate run at every horizon: one row per (model, variant, width, seed, horizon, rate),
    the chosen marked."""
    lrs = chosen_lrs(records)
    out = []
    for r in records:
        k = r["key"]
        if k["part"] == "scaling":
            out.append({**{f: k[f] for f in (*RUN, "lr")}, "val_error": r.get("val_error"),
                        "final_loss": r.get("final_loss"), "error": error(r),
                        "chosen": lrs[tuple(k[f] for f in RUN)] == k["lr"]})
    return sorted(out, key=lambda r: tuple(map(str, (r["model"], r["variant"], r["width"], r["seed"])))
                  + (r["horizon"], r["lr"]))


POINT = ("model", "variant", "width", "horizon")


def points(rows: list[dict]) -> list[dict]:
    """One point per (model, variant, width, horizon): its runs' mean error over their seeds.

    What the laws, IsoFLOP profiles, comparisons and plots fit (:func:`runs` lists every run).
    A point keeps the first run's fields, with ``error`` the mean of its finished runs,
    ``errors`` theirs, ``error_sd`` their standard deviation, ``seeds`` their count and ``trunk``
    the (model, variant, width) its runs share; a point with no finished run has ``error`` None.

    >>> rows = [{"model": "m", "variant": "v", "width": 1, "horizon": 8, "seed": s, "error": e, "trunk": "t"}
    ...         for s, e in ((0, 0.2), (1, 0.3), (2, None))]
    >>> p, = points(rows); p["error"], p["seeds"], p["trunk"]
    (0.25, 2, 'm/v/1')
    """
    by = defaultdict(list)
    for r in rows:
        by[tuple(r[k] for k in POINT)].append(r)
    out = []
    for key, mine in by.items():
        errors = [r["error"] for r in mine if r["error"] is not None]
        out.append({**mine[0], "error": statistics.fmean(errors) if errors else None, "errors": errors,
                    "error_sd": statistics.stdev(errors) if len(errors) > 1 else None, "seeds": len(errors),
                    "trunk": "/".join(map(str, key[:3]))})
    return out


def _arrays(rows: list[dict]) -> dict[str, np.ndarray]:
    done = [r for r in rows if r["error"] is not None and r["train_flops"]]
    trunks = {t: i for i, t in enumerate(dict.fromkeys(r["trunk"] for r in done))}
    return {"C": np.array([r["train_flops"] for r in done], np.float64),
            "N": np.array([r["params"] for r in done], np.float64),
            "D": np.array([r["samples"] for r in done], np.float64),
            "e": np.clip(np.array([r["error"] for r in done], np.float64), 1e-6, 1 - 1e-6),
            "trunk": np.array([trunks[r["trunk"]] for r in done]),
            "runs": [np.array(r.get("errors") or [r["error"]], np.float64) for r in done],
            "key": [(r["width"], r["horizon"]) for r in done]}


def _frontier(a: dict[str, np.ndarray]) -> np.ndarray:
    return np.flatnonzero(pareto(np.stack([a["C"], a["e"]], 1)))


STARTS = 24  # L-BFGS-B runs from the grid points of lowest objective (of 9–162 per form)


def _score(form, x, e, *, eps0, fraction, n_resamples, seed, groups=None, compute=None, runs=None,
           frontier=False, starts=STARTS) -> dict:
    """Full fit, bootstrap intervals (over points and their seeds) and the extrapolation check
    of one form; with ``frontier``, of the compute frontier of ``(x, e)``."""
    front = np.flatnonzero(pareto(np.stack([x, e], 1))) if frontier else slice(None)
    xf, ef = fits._take(form, x, front), e[front]
    try:
        full = fits.fit(form, xf, ef, eps0=eps0, starts=starts)
        boot = fits.bootstrap(form, x, e, groups=groups, runs=runs, frontier=frontier, n_resamples=n_resamples,
                              seed=seed, eps0=eps0, fit_result=full)
        held = compare.extrapolation(form, xf, ef, fraction=fraction, groups=None if frontier else groups,
                                     n_resamples=n_resamples, seed=seed, eps0=eps0, compute=compute,
                                     starts=starts)
    except (ValueError, RuntimeError) as err:
        return {"form": form, "skipped": str(err)}
    held = {k: v for k, v in held.items() if k not in ("fit",)}
    return {"form": form, "fit": full, "intervals": boot["params"], "bootstrap_failed": boot["failed"],
            "n_resamples": boot["n_resamples"], "samples": boot["samples"], "extrapolation": held}


def _call(task):
    fn, args, kwargs = task
    return fn(*args, **kwargs)


def _map(fn, calls: list[tuple[tuple, dict]], workers: int) -> list:
    """``[fn(*args, **kwargs) for args, kwargs in calls]``, in ``workers`` spawned processes when
    > 1. Every call is seeded on its own, so the results do not depend on ``workers``."""
    tasks = [(fn, args, kwargs) for args, kwargs in calls]
    if workers <= 1 or len(tasks) <= 1:
        return [_call(t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_call, tasks))


def laws(rows: list[dict], *, eps0: float, fraction: float = 0.25, n_resamples: int = 1000,
         seed: int = 0, forms: tuple[str, ...] = (*FRONTIER_FORMS, *JOINT_FORMS), workers: int = 1,
         starts: int = STARTS) -> dict[str, dict]:
    """Per ``model/variant``: every form's fit, intervals and extrapolation, and the chosen form
    (the fits in ``workers`` processes, each law's full fits from ``starts`` grid points)."""
    calls, found = [], {}
    for (model, variant), mine in _by_variant(rows).items():
        a = _arrays(mine)
        if len(a["e"]) < 5:
            continue
        front = _frontier(a)
        found[model, variant] = (a, front)
        common = {"eps0": eps0, "fraction": fraction, "n_resamples": n_resamples, "seed": seed, "starts": starts}
        for form in FRONTIER_FORMS:
            if form in forms and len(front) >= 4:
                calls.append(((form, a["C"], a["e"]), {**common, "runs": a["runs"], "frontier": True}))
        for form in JOINT_FORMS:
            if form in forms:
                calls.append(((form, (a["N"], a["D"]), a["e"]),
                              {**common, "groups": a["trunk"], "compute": a["C"], "runs": a["runs"]}))
    scores = iter(_map(_score, calls, workers))
    out = {}
    for (model, variant), (a, front) in found.items():
        scored_forms = {form: next(scores) for form in FRONTIER_FORMS if form in forms and len(front) >= 4}
        scored_forms.update((form, next(scores)) for form in JOINT_FORMS if form in forms)
        scored = {f: s["extrapolation"] for f, s in scored_forms.items()
                  if "extrapolation" in s and "median_abs_log" in s["extrapolation"]}
        best = min(scored, key=lambda f: (scored[f]["median_abs_log"], scored[f]["max_abs_log"])) if scored else None
        out[f"{model}/{variant}"] = {"model": model, "variant": variant, "forms": scored_forms, "best": best,
                                     "frontier": [a["key"][i] for i in front], "n_runs": int(len(a["e"]))}
    return out


def reruns(rows: list[dict], *, model: str, eps0: float, variant: str = "standard", form: str = "frontier",
           n_resamples: int = 1000, seed: int = 0, starts: int = STARTS) -> dict:
    """``form``'s parameters of ``model/variant`` over simulated reruns with new seeds
    (:func:`.compare.reruns`, one seed spread per horizon), without the resampled values."""
    a = _arrays([r for r in rows if r["model"] == model and r["variant"] == variant])
    if len(a["e"]) < 5:
        return {}
    try:
        out = compare.reruns(form, a["C"], a["runs"], [h for _, h in a["key"]], eps0=eps0, n_resamples=n_resamples,
                             seed=seed, starts=starts)
    except (ValueError, RuntimeError) as err:
        return {"form": form, "skipped": str(err)}
    return {"form": form, **{k: v for k, v in out.items() if k != "samples"}}


def _by_variant(rows):
    by = defaultdict(list)
    for r in rows:
        by[(r["model"], r["variant"])].append(r)
    return by


def isoflops(rows: list[dict]) -> dict[str, dict]:
    """Per ``model/variant``: the compute-optimal parameter count per budget and its trend in compute."""
    out = {}
    for (model, variant), mine in _by_variant(rows).items():
        a = _arrays(mine)
        if len(set(a["N"])) >= 3:
            out[f"{model}/{variant}"] = compare.isoflop(a["C"], a["N"], a["e"])
    return out


def _frontier_exponent(form, C, e, eps0, start):
    front = np.flatnonzero(pareto(np.stack([C, e], 1)))
    if len(np.unique(C[front])) < len(fits.FORMS[form].params):
        return None
    try:
        r = fits.fit(form, C[front], e[front], eps0=eps0, starts=[start])
    except (ValueError, RuntimeError):
        return None
    return r["params"][EXPONENT[form]]


def _paired_wins(form, a, b, pairs, starts, eps0, n_resamples, seed) -> tuple[int, int]:
    """Of ``n_resamples`` resamples of matched pairs, how many fitted both exponents, and in how
    many ``a``'s was the larger."""
    rng, run_rng = np.random.default_rng(seed), np.random.default_rng((seed, 1))  # pairs, seeds
    wins, n = 0, 0
    for _ in range(n_resamples):
        pick = [pairs[j] for j in rng.integers(0, len(pairs), len(pairs))]
        ia, ib = np.array([p[0] for p in pick]), np.array([p[1] for p in pick])
        ea, eb = fits._redraw(run_rng, a["runs"], a["e"], ia), fits._redraw(run_rng, b["runs"], b["e"], ib)
        ta = _frontier_exponent(form, a["C"][ia], ea, eps0, starts[0])
        tb = _frontier_exponent(form, b["C"][ib], eb, eps0, starts[1])
        if ta is None or tb is None:
            continue
        n += 1
        wins += ta > tb
    return wins, n


def comparisons(rows: list[dict], laws_: dict, *, eps0: float, form: str = "frontier",
                reference: str = "standard", n_resamples: int = 1000, seed: int = 0,
                workers: int = 1) -> list[dict]:
    """Each variant's frontier exponent against ``reference``'s, by a paired bootstrap.

    The points of both are matched by (width, horizon); a resample draws matched pairs with
    replacement and each drawn point's seeds (as :func:`.fits.bootstrap`), takes each variant's
    frontier of the drawn points and refits ``form``. A variant
    "scales better" (a larger exponent) only if at least 95% of the resamples say so, and worse
    only if at most 5% do; otherwise the two are not distinguishable. The variants' bootstraps
    run in ``workers`` processes.
    """
    found, calls = [], []
    by = _by_variant(rows)
    for (model, variant), mine in by.items():
        ref = by.get((model, reference))
        law_a, law_b = laws_.get(f"{model}/{variant}"), laws_.get(f"{model}/{reference}")
        if variant == reference or ref is None or not law_a or not law_b:
            continue
        fa, fb = law_a["forms"].get(form, {}), law_b["forms"].get(form, {})
        if "fit" not in fa or "fit" not in fb:
            continue
        a, b = _arrays(mine), _arrays(ref)
        index_b = {k: i for i, k in enumerate(b["key"])}
        pairs = [(i, index_b[k]) for i, k in enumerate(a["key"]) if k in index_b]
        starts = [[f["fit"]["params"][p] for p in fits.FORMS[form].params] for f in (fa, fb)]
        found.append((model, variant, len(pairs), *(f["fit"]["params"][EXPONENT[form]] for f in (fa, fb))))
        calls.append(((form, a, b, pairs, starts, eps0, n_resamples, seed), {}))
    out = []
    for (model, variant, n_pairs, theta_a, theta_b), (wins, n) in zip(found, _map(_paired_wins, calls, workers)):
        p = wins / n if n else math.nan
        verdict = ("not distinguishable" if not n or 0.05 < p < 0.95 else
                   f"{variant} scales better" if p >= 0.95 else f"{reference} scales better")
        out.append({"model": model, "variant": variant, "reference": reference, "form": form,
                    "exponent": theta_a, "reference_exponent": theta_b, "difference": theta_a - theta_b,
                    "p_better": p, "resamples": n, "pairs": n_pairs, "verdict": verdict})
    return out


def targets(rows: list[dict], reference_rows: list[dict], laws_: dict, *, model: str,
            variant: str = "standard", reruns_: dict | None = None) -> dict:
    """The study's targets, measured: regime, training length, extrapolation, fit, precision."""
    mine = [r for r in rows if r["model"] == model and r["variant"] == variant and r["error"] is not None]
    if not mine:
        return {}
    widest, narrowest = max(r["width"] for r in mine), min(r["width"] for r in mine)
    longest, shortest = max(r["horizon"] for r in mine), min(r["horizon"] for r in mine)

    def err(width, horizon, source=mine):
        values = [r["error"] for r in source if r["width"] == width and r["horizon"] == horizon]
        return statistics.fmean(values) if values else None

    out = {"largest_at_longest": err(widest, longest), "smallest_at_shortest": err(narrowest, shortest)}
    ref = [r for r in reference_rows if r["model"] == model and r["variant"] == variant and r["error"] is not None]
    if ref:
        out["reference_horizon"] = ref[0]["horizon"]
        out["reference_error"] = statistics.fmean(r["error"] for r in ref)
        out["reference_change"] = None if out["largest_at_longest"] is None else \
            out["reference_error"] - out["largest_at_longest"]
    law = laws_.get(f"{model}/{variant}")
    if law and law["best"]:
        chosen = law["forms"][law["best"]]
        held, full = chosen["extrapolation"], chosen["fit"]
        out.update(form=law["best"], median_abs_log=held["median_abs_log"], max_abs_log=held["max_abs_log"],
                   inside_band=held["inside_prediction_band"], inside_curve_band=held["inside_band"],
                   rmse_log=full["rmse_log"], spearman=full["spearman"])
    # The precision target is on the frontier law's exponent b, whichever form extrapolated best.
    zhai = (law or {}).get("forms", {}).get("frontier", {})
    if "fit" in zhai:  # beside the chosen form's in-sample fit, the frontier law's
        out.update(frontier_rmse_log=zhai["fit"]["rmse_log"], frontier_spearman=zhai["fit"]["spearman"])
        value, (low, high) = zhai["fit"]["params"]["b"], zhai["intervals"]["b"]
        out.update(exponent_name="b (frontier law)", exponent=value, exponent_low=low, exponent_high=high)
    if (reruns_ or {}).get("form") == "frontier" and "params" in reruns_:  # beside it, b over new seeds
        out.update(zip(("rerun_low", "rerun_median", "rerun_high"), reruns_["params"]["b"]))
    checks = {
        "regime": (out["largest_at_longest"] is not None and 0.10 <= out["largest_at_longest"] <= 0.40
                   and out["smallest_at_shortest"] is not None and out["smallest_at_shortest"] < 0.75),
        "trained_enough": out.get("reference_change") is not None and abs(out["reference_change"]) <= 0.02,
        "extrapolation": ("median_abs_log" in out and out["median_abs_log"] <= 0.05 and out["max_abs_log"] <= 0.10
                          and out["inside_band"] >= 0.8),
        "in_sample": ("rmse_log" in out and out["rmse_log"] <= 0.03 and out["spearman"] is not None
                      and abs(out["spearman"]) < 0.3),
        "precision": ("exponent" in out and out["exponent"] > 0 and out["exponent_low"] >= 0.75 * out["exponent"]
                      and out["exponent_high"] <= 1.25 * out["exponent"]),
    }
    return {**out, "met": checks}


def controls(rows: list[dict]) -> list[dict]:
    """One row per (variant, treatment) of the Type 2.1 comparison: the spread over seeds."""
    by = defaultdict(list)
    for r in rows:
        by[(r["variant"], r["treatment"])].append(r)
    out = []
    for (variant, treatment), mine in sorted(by.items()):
        done = [r for r in mine if r["error"] is not None]
        row = {"variant": variant, "treatment": treatment, "seeds": len(mine), "diverged": len(mine) - len(done),
               "lr": mine[0]["lr"]}
        if done:
            row["accuracy"] = _spread([1 - r["error"] for r in done])
            row["final_train_loss"] = _spread([r["final_loss"] for r in done])
        out.append(row)
    return out


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}
