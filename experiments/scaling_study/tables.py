"""The scaling study's written outputs: the Markdown table, the CSV, the JSON and the verdict."""

from __future__ import annotations

import csv
import math
import json
from pathlib import Path

from experiments.scaling_study import analysis, runs
from jconv.runner import config_json

MARGIN = 0.05  # accuracy points that count as "above chance" or "as good as the standard"

CSV_FIELDS = ["part", "model", "variant", "width", "seed", "treatment", "params", "macs",
              "train_flops", "test_accuracy", "test_loss", "final_loss", "images_per_s",
              "step_time_s", "train_flops_per_s", "first_step_s", "wall_s", "diverged"]


def mark_frontier(rows: list[dict]) -> dict[str, list[str]]:
    """Sets ``row["frontier"]`` (Pareto in MACs per image and mean error, per model)."""
    frontier = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model and "error" in r]
        flags = analysis.pareto([(r["macs"], r["error"]["mean"]) for r in mine])
        for r, flag in zip(mine, flags):
            r["frontier"] = flag
        frontier[model] = [f"{r['variant']} w{r['width']:g}" for r, f in zip(mine, flags) if f]
    return frontier


def verdict(rows: list[dict], num_classes: int | None) -> dict | None:
    """Whether the Type 2.1 collapse belongs to training or to the variant, from the comparison.

    ``training``: some treatment brings Type 2.1 within :data:`MARGIN` of the standard conv
    (trained as studied or with the same treatment, whichever is lower). ``variant``: none lifts it more than :data:`MARGIN` above its own
    accuracy as studied (or above chance). ``both``: a treatment lifts it, but it stays more
    than :data:`MARGIN` below the standard.
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
        answer, text = "variant", ("the variant: no change of initialisation, learning rate or "
                                   "normalisation lifts Type 2.1 by more than "
                                   f"{MARGIN:.2f} above {'chance' if chance >= base else 'its own accuracy'}")
    else:
        answer, text = "both", (f"both: `{best}` ({runs.TREATMENTS[best]}) lifts Type 2.1 from "
                                f"{base:.3f} to {mine[best]:.3f}, so part of the collapse is training, "
                                "but it stays more than "
                                f"{MARGIN:.2f} below the standard conv: the rest belongs to the variant")
    return {"answer": answer, "text": text, "figures": figures, "best": best}


def write_csv(records: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        for r in sorted(records, key=lambda r: tuple(str(r["key"].get(k)) for k in CSV_FIELDS[:6])):
            writer.writerow({k: r["key"].get(k, r.get(k)) for k in CSV_FIELDS})


def write_json(config, results: dict, path: Path) -> None:
    out = {"config": config_json(config), **results}
    path.write_text(json.dumps(out, indent=1, sort_keys=True, default=float) + "\n")


def _spread(s: dict | None, spec: str = ".3f") -> str:
    if not s:
        return "—"
    if s["n"] == 1:
        return format(s["mean"], spec)
    return f"{s['mean']:{spec}} ± {s['std']:{spec}}"


def _num(x, spec=",") -> str:
    return "—" if x is None else format(x, spec)


def _law_row(model: str, variant: str, law: dict) -> str:
    best = law["forms"][law["best"]]
    b = (f"{best['b']:.3f} ± {best['b_se']:.3f} [{best['b_low']:.2f}, {best['b_high']:.2f}]"
         if "b" in best else "—")
    bound = [f for f in analysis.FORMS if law["forms"].get(f, {}).get("at_bound")]
    aicc = " / ".join((f"{law['forms'][f]['aicc']:.1f}" + ("ᵇ" if f in bound else ""))
                      if f in law["forms"] and math.isfinite(law["forms"][f]["aicc"]) else "—"
                      for f in analysis.FORMS)
    e_inf = f"{best['e_inf']:.3f}" if "e_inf" in best else "—"
    r2 = "—" if best["r2"] is None else f"{best['r2']:.2f}"
    return (f"| {model} | {variant} | {law['best']} | {b} | {e_inf} | {r2} | "
            f"{best['rmse']:.3f} | {aicc} |")


def markdown(config, results: dict, records: list[dict]) -> str:
    rows = results["rows"]
    done = [r for r in records if r["key"]["part"] == "scaling"]
    lines = [f"# Scaling study: {', '.join(config.models)} on {config.dataset}", "",
             f"{len(done)} training runs: {config.steps} steps of batch {config.batch_size}, "
             f"{config.optimizer} at learning rate {config.learning_rate:g} ({config.schedule}), "
             f"seeds {', '.join(map(str, config.seeds))}; widths {', '.join(f'{w:g}' for w in config.widths)}; "
             f"input sizes {', '.join(f'{m} {runs.input_size(config, m)}' for m in config.models)}. "
             "Accuracy and loss: mean ± standard deviation over seeds. Error = 1 − accuracy. "
             "Training FLOPs = 6 · MACs per image · steps · batch. ★: on the Pareto frontier "
             "(no run of the same model has both fewer MACs and lower mean error).", "",
             "| model | variant | width | params | MACs/image | train FLOPs | test accuracy | "
             "min–max | test loss | images/s | GFLOP/s | ★ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = r.get("accuracy")
        span = "—" if not acc else f"{acc['min']:.3f}–{acc['max']:.3f}"
        diverged = f" ({r['diverged']} diverged)" if r["diverged"] else ""
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['width']:g} | {r['params']:,} | {r['macs']:,} | "
            f"{_num(r['train_flops'], '.3g')} | {_spread(acc)}{diverged} | {span} | "
            f"{_spread(r.get('loss'))} | {_num(r['images_per_s'], ',.0f')} | "
            f"{_num(r['gflops_per_s'], '.2f')} | {'★' if r.get('frontier') else ''} |")
    lines += ["", "## Fitted laws: error against training compute", "",
              "Per (model, variant), on every run: the form with the lowest AICc (flat e = e∞; "
              "power e = a·c^(−b); power+floor e = a·c^(−b) + e∞; c = C/C₀), its exponent b ± "
              "standard error [95% interval], its floor, R² and RMSE on the error, and the AICc of "
              "each form (flat / power / power+floor; lower is better; ᵇ: a parameter on its bound, "
              "not chosen).", "",
              "| model | variant | form | b ± se [95%] | e∞ | R² | RMSE | AICc |",
              "|---|---|---|---|---|---|---|---|"]
    for name, law in results["laws"].items():
        lines.append(_law_row(*name.split("/"), law))
    lines += ["", "## Throughput against the cost model", "",
              "Achieved GFLOP/s = 6 · MACs per image · images/s (median over seeds). At equal "
              "arithmetic a variant at a lower rate than the standard conv is held back by its "
              "kernels, not by its MACs.", "",
              "| model | width | " + " | ".join(runs.variants(config)) + " |",
              "|---|---|" + "---|" * len(runs.variants(config))]
    for model in config.models:
        for width in config.widths:
            cells = []
            for variant in runs.variants(config):
                r = next((r for r in rows if (r["model"], r["variant"], r["width"]) ==
                          (model, variant, width)), None)
                cells.append("—" if r is None or r["gflops_per_s"] is None
                             else f"{r['gflops_per_s']:.2f} ({r['images_per_s']:,.0f} img/s)")
            lines.append(f"| {model} | {width:g} | " + " | ".join(cells) + " |")
    if results["controls"]:
        c = config.controls
        lines += ["", "## Type 2.1: the variant or its training?", "",
                  f"{c.model} at width {c.width:g}, seeds {', '.join(map(str, config.seeds))}, "
                  "each treatment changing one thing from the study's own training:", "",
                  "| variant | treatment | what changes | test accuracy | final train loss |",
                  "|---|---|---|---|---|"]
        for r in results["controls"]:
            diverged = f" ({r['diverged']} diverged)" if r["diverged"] else ""
            lines.append(f"| {r['variant']} | {r['treatment']} | {runs.TREATMENTS[r['treatment']]} | "
                         f"{_spread(r.get('accuracy'))}{diverged} | "
                         f"{_spread(r.get('final_train_loss'))} |")
        v = results["verdict"]
        if v:
            lines += ["", f"**Verdict: {v['text']}.** ({v['figures']}.)"]
    return "\n".join(lines) + "\n"
