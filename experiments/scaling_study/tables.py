"""The scaling study's written outputs: the Markdown tables, the CSV, the JSON and the Type 2.1 verdict."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np

from experiments.scaling_study import analysis, runs
from jconv.runner import config_json

MARGIN = 0.05  # accuracy points that count as "above chance" or "as good as the standard"

CSV_FIELDS = ["model", "variant", "width", "seed", "lr", "horizon", "treatment", "params", "macs", "samples",
              "train_flops", "cost_model_flops", "error", "test_loss", "val_error", "final_loss", "wall_s",
              "images_per_s", "diverged"]

TARGETS = {
    "regime": "largest model's error at the longest horizon in [0.10, 0.40]; smallest at the shortest < 0.75",
    "trained_enough": "the largest model at the reference horizon changes its error by ≤ 0.02",
    "extrapolation": "held-out runs: median |log(ê/e)| ≤ 0.05, maximum ≤ 0.10, ≥ 80% inside the 80% prediction band",
    "in_sample": "the chosen law: RMSE of log error ≤ 0.03 and |Spearman ρ| of the residuals against compute < 0.3",
    "precision": "the exponent's 10–90% interval within ±25% of it",
}


def _rho(value) -> str:
    return "—" if value is None else format(value, "+.2f")


def verdict(rows: list[dict], num_classes: int | None) -> dict | None:
    """Whether Type 2.1's deficit belongs to training or to the variant, from the comparison.

    ``training``: some treatment brings Type 2.1 within :data:`MARGIN` of the standard conv
    (trained as studied or with the same treatment, whichever is lower). ``variant``: none lifts
    it more than :data:`MARGIN` above its own accuracy as studied (or above chance). ``both``: a
    treatment lifts it, but it stays more than :data:`MARGIN` below the standard.
    """
    acc = {(r["variant"], r["treatment"]): r["accuracy"]["mean"] for r in rows if "accuracy" in r}
    mine = {t: a for (v, t), a in acc.items() if v == "shared_filter"}
    reference = acc.get(("standard", "as_studied"))
    if not mine or reference is None or "as_studied" not in mine:
        return None
    chance = 1 / num_classes if num_classes else 0.0
    best = max(mine, key=mine.get)
    base = mine["as_studied"]
    reference = min(reference, acc.get(("standard", best), reference))
    figures = (f"Type 2.1 as studied {base:.3f}; best treatment `{best}` {mine[best]:.3f}; standard as "
               f"studied {acc[('standard', 'as_studied')]:.3f}"
               + (f", with `{best}` {acc[('standard', best)]:.3f}" if ("standard", best) in acc else "")
               + f"; chance {chance:.3f}")
    if mine[best] >= reference - MARGIN:
        answer, text = "training", (f"training: with `{best}` ({runs.TREATMENTS[best]}) Type 2.1 "
                                    "reaches the standard conv's accuracy")
    elif mine[best] <= max(base, chance) + MARGIN:
        answer, text = "variant", ("the variant: no treatment lifts Type 2.1 by more than "
                                   f"{MARGIN:.2f} above {'chance' if chance >= base else 'its own accuracy'}, "
                                   f"and it stays more than {MARGIN:.2f} below the standard conv")
    else:
        answer, text = "both", (f"both: `{best}` ({runs.TREATMENTS[best]}) lifts Type 2.1 from "
                                f"{base:.3f} to {mine[best]:.3f}, so part of the deficit is training, "
                                f"but it stays more than {MARGIN:.2f} below the standard conv: the rest "
                                "belongs to the variant")
    return {"answer": answer, "text": text, "figures": figures, "best": best}


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _plain(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(type(x).__name__)


def write_json(config, results: dict, path: Path) -> None:
    """``results`` with the config, without the bootstrap's resampled parameters (only their intervals)."""
    laws = {name: {**law, "forms": {f: {k: v for k, v in s.items() if k != "samples"}
                                    for f, s in law["forms"].items()}}
            for name, law in results["laws"].items()}
    out = {"config": config_json(config), **results, "laws": laws}
    path.write_text(json.dumps(out, indent=1, sort_keys=True, default=_plain) + "\n")


def _num(x, spec=",") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _interval(value, low_high, spec=".3f") -> str:
    low, high = low_high
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def _law_lines(results: dict) -> list[str]:
    lines = ["| model | variant | form | parameters [10–90% bootstrap] | converged | RMSE log | Spearman | "
             "held-out median / max abs log | inside 80% prediction band | chosen |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, law in results["laws"].items():
        for form, s in law["forms"].items():
            if "fit" not in s:
                lines.append(f"| {law['model']} | {law['variant']} | {form} | {s.get('skipped', '—')} "
                             "| | | | | | |")
                continue
            fit, ext = s["fit"], s["extrapolation"]
            params = "; ".join(f"{k} = {_interval(v, s['intervals'][k], '.3g')}" for k, v in fit["params"].items())
            held = ("skipped: " + ext["skipped"] if "skipped" in ext else
                    f"{ext['median_abs_log']:.3f} / {ext['max_abs_log']:.3f} (n = {ext['n_held_out']})")
            inside = "—" if "inside_band" not in ext else \
                f"{ext['inside_prediction_band']:.0%} ({ext['inside_band']:.0%} of the curve's)"
            rho = "—" if fit["spearman"] is None else f"{fit['spearman']:+.2f}"
            lines.append(f"| {law['model']} | {law['variant']} | {form} | {params} | {fit['converged_share']:.0%} | "
                         f"{fit['rmse_log']:.3f} | {rho} | {held} | {inside} | {'✓' if law['best'] == form else ''} |")
    return lines


def markdown(config, results: dict) -> str:
    """``table.md``: runs, rates, laws, extrapolation, IsoFLOP, comparisons, controls and the
    targets. Long by design: the file's sections in reading order."""
    rows = results["runs"]
    hs = runs.horizons(config)
    lines = [f"# Scaling study: {', '.join(config.models)} on {config.dataset}", "",
             f"{len(rows)} runs at their chosen learning rates ({len(results['sweep'])} trained in all): "
             f"widths {', '.join(f'{w:g}' for w in config.widths)}, horizons {', '.join(map(str, hs))}"
             + (f" (and {', '.join(map(str, config.more_horizons.horizons))} for "
                f"{', '.join(config.more_horizons.variants)})"
                if config.more_horizons.variants and config.more_horizons.horizons else "")
             + f" steps of batch {config.batch_size}, seeds {', '.join(map(str, config.seeds))}"
             + (f" (and {', '.join(map(str, config.repeats.seeds))} for {', '.join(config.repeats.variants)}, "
                "at the rates the first seed chose)" if config.repeats.variants and config.repeats.seeds else "")
             + "; "
             f"{config.optimizer}{' (Nesterov)' if config.nesterov else ''} momentum {config.momentum}, "
             f"weight decay {config.weight_decay:g}, label smoothing {config.label_smoothing:g}, "
             f"warmup {config.warmup_steps} steps, constant rate, 1−√ cooldown over the last "
             f"{config.cooldown_fraction:.0%} of each horizon; norm `{config.norm}`. "
             "Error = 1 − test accuracy; compute = XLA's FLOPs of the compiled train step (oneDNN off) × "
             "steps; the cost model's 6·MACs·batch·steps beside it."
             + "".join(f" {m}'s data rendered in {t:.1f} s." for m, t in results.get("render_s", {}).items()
                       if t), "",
             "| model | variant | width | horizon | seed | lr | params | samples | train FLOPs (XLA) | "
             "XLA ÷ cost model | test error | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = (r["train_flops"] / r["cost_model_flops"]) if r["train_flops"] and r["cost_model_flops"] else None
        err = "diverged" if r["diverged"] else _num(r["error"], ".3f")
        lines.append(f"| {r['model']} | {r['variant']} | {r['width']:g} | {r['horizon']} | {r['seed']} | "
                     f"{r['lr']:g} | "
                     f"{_num(r['params'])} | {_num(r['samples'])} | {_num(r['train_flops'], '.3g')} | "
                     f"{_num(ratio, '.2f')} | {err} | {_num(r['wall_s'], ',.0f')} |")
    lines += ["", "## Learning rates (chosen per horizon: lowest validation error; every rate at the shortest "
              "horizon, then the rate chosen before and the next lower)", "",
              "| model | variant | width | seed | horizon | validation error by rate | chosen | its test error |",
              "|---|---|---|---|---|---|---|---|"]
    for ident, tried in itertools.groupby(results["sweep"], key=lambda r: tuple(r[f] for f in analysis.RUN)):
        tried = list(tried)
        best = next((r for r in tried if r["chosen"]), None)
        scores = " · ".join(f"{r['lr']:g}: {_num(r['val_error'], '.3f')}" for r in tried)
        lines.append(f"| {ident[0]} | {ident[1]} | {ident[2]:g} | {ident[3]} | {ident[4]} | {scores} | "
                     f"{_num(best and best['lr'], 'g')} | {_num(best and best['error'], '.3f')} |")
    lines += ["", "## Laws", "",
              "A point is a (width, horizon) with the mean error of its seeds. The `power`, `frontier` and `m4` "
              "forms are fitted to each variant's compute frontier (points no other point of the variant beats "
              "in both compute and error), `joint` (E + A/n^α + B/d^β, Hoffmann et al.) and `kaplan` "
              "(E + (A/n^α + B/d)^β, Kaplan et al.) to every point. Huber loss "
              "(δ = 1e-3) on log error, L-BFGS-B from a grid of starts (converged: the share of starts that "
              f"reached the best optimum); intervals from {config.bootstrap} bootstrap resamples of points (the "
              "joint laws': of widths) and of each point's seeds, the frontier taken again from each "
              "resample. Held out: fitted on the points of compute ≤ "
              f"{config.holdout_fraction:g} × the largest, scored on the rest. Chosen: the lowest held-out "
              "median. The prediction band (10–90%) holds the bootstrap's spread of the curve and the fit's "
              "own scatter of single runs; the curve's band alone in brackets. Parameters in units of the "
              "smallest compute (c = C/C₀; n = N/N₀, d = D/D₀).", ""]
    lines += _law_lines(results)
    lines += ["", "## IsoFLOP: the compute-optimal size", "",
              "Per compute budget (bins a factor 2 wide), the parabola of log error in log parameters; its vertex "
              "is the best size (— at an edge of the sizes trained). Trend: N_opt ∝ C^a.", "",
              "| model | variant | budgets (FLOPs → N_opt) | a ± se |", "|---|---|---|---|"]
    for name, iso in results["isoflop"].items():
        budgets = ", ".join(f"{b['compute']:.2g} → {'—' if b['at_edge'] else format(b['n_opt'], ',.0f')}"
                            for b in iso["bins"]) or "none with 3 sizes"
        slope = "—" if iso["slope"] is None else (f"{iso['slope']:.2f}" + (
            "" if iso.get("slope_se") is None else f" ± {iso['slope_se']:.2f}"))
        lines.append(f"| {name.replace('/', ' | ')} | {budgets} | {slope} |")
    lines += ["", "## Which variant scales better? (paired bootstrap of the frontier exponent)", "",
              "| model | variant | exponent | standard's | P(variant's larger) | verdict |", "|---|---|---|---|---|---|"]
    for c in results["comparisons"]:
        lines.append(f"| {c['model']} | {c['variant']} | {c['exponent']:.3f} | {c['reference_exponent']:.3f} | "
                     f"{_num(c['p_better'], '.3f')} ({c['resamples']} resamples) | {c['verdict']} |")
    lines += _target_lines(results.get("targets") or {})
    if results["controls"]:
        c = config.controls
        lines += ["", "## Type 2.1: the variant or its training?", "",
                  f"{config.models[0]} at width {c.width:g}, the shortest horizon, each variant at its chosen rate, "
                  "each treatment changing one thing from the study's recipe:", "",
                  "| variant | treatment | what changes | test accuracy | final train loss |", "|---|---|---|---|---|"]
        for r in results["controls"]:
            acc = r.get("accuracy")
            diverged = f" ({r['diverged']} diverged)" if r["diverged"] else ""
            lines.append(f"| {r['variant']} | {r['treatment']} | {runs.TREATMENTS[r['treatment']]} | "
                         f"{'—' if not acc else format(acc['mean'], '.3f')}{diverged} | "
                         f"{'—' if 'final_train_loss' not in r else format(r['final_train_loss']['mean'], '.3f')} |")
        v = results["verdict"]
        if v:
            lines += ["", f"**Verdict: {v['text']}.** ({v['figures']}.)"]
    return "\n".join(lines) + "\n"


def _target_lines(t: dict) -> list[str]:
    if not t:
        return []
    met = t["met"]

    def mark(name):
        return "met" if met[name] else "**missed**"

    exponent = ("—" if "exponent" not in t else
                f"{t['exponent_name']} = {t['exponent']:.3f} [{t['exponent_low']:.3f}, {t['exponent_high']:.3f}]"
                + ("" if "rerun_median" not in t else
                   f"; over simulated reruns with new seeds {t['rerun_median']:.3f} "
                   f"[{t['rerun_low']:.3f}, {t['rerun_high']:.3f}]"))
    change = "—" if t.get("reference_change") is None else (
        f"{t['reference_error']:.3f} at {t['reference_horizon']} steps, a change of {t['reference_change']:+.3f}")
    values = {
        "regime": f"{_num(t['largest_at_longest'], '.3f')} largest/longest; {_num(t['smallest_at_shortest'], '.3f')} "
                  "smallest/shortest",
        "trained_enough": change,
        "extrapolation": ("—" if "median_abs_log" not in t else
                          f"{t['form']}: {t['median_abs_log']:.3f} / {t['max_abs_log']:.3f}, {t['inside_band']:.0%} inside"),
        "in_sample": ("—" if "rmse_log" not in t else
                      f"{t['form']}: RMSE {t['rmse_log']:.3f}, ρ {_rho(t['spearman'])}"
                      + ("" if t['form'] == "frontier" or "frontier_rmse_log" not in t else
                         f" (frontier law: {t['frontier_rmse_log']:.3f}, ρ {_rho(t['frontier_spearman'])})")),
        "precision": exponent,
    }
    lines = ["", "## Targets (standard conv)", "", "| target | what it asks | measured | |", "|---|---|---|---|"]
    lines += [f"| {name} | {TARGETS[name]} | {values[name]} | {mark(name)} |" for name in TARGETS]
    if "rerun_median" in t:
        lines += ["", "The precision target judges the bootstrap interval (resamples of points and their seeds). "
                  "Beside it, the median and 10–90% of b over simulated reruns of the standard conv: each point's "
                  "seeds drawn again around its mean, log-normal with its horizon's spread of log error, and the "
                  "frontier law refitted, i.e. what a second run of this design would give."]
    return lines
