"""Section 9 of the evidence report: the scaling study's results, when the work directory has them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from experiments.report_sections import Context, table

HOW = "jconv run configs/scaling_study.py   # or --workdir WORKDIR/scaling_study, or here --config.study_dir=DIR"


DEFAULT = Path("runs") / "scaling_study"  # where `jconv run configs/scaling_study.py` writes


def _study_dir(ctx: Context) -> Path:
    """``config.study_dir`` if given; else ``WORKDIR/scaling_study`` if it has results; else the
    study's own default work directory."""
    given = ctx.config.get("study_dir", "")
    if given:
        return Path(given)
    inside = ctx.workdir / "scaling_study"
    return inside if (inside / "results.json").is_file() or not DEFAULT.is_dir() else DEFAULT


def scaling_study(ctx: Context) -> str:
    """The scaling study's section, read from its ``results.json``. Long by design: one
    section's tables and text in reading order."""
    folder = _study_dir(ctx)
    path = folder / "results.json"
    if not path.is_file():
        ctx.figures["scaling_study"] = None
        return f"""## 9. Accuracy against compute: the scaling study

No results of the scaling study in `{folder}`. Run it there, then build this report again:

    {HOW}
"""
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a scaling-study results file ({error})") from None
    laws = results.get("laws", {})
    exponent = {"power": "b", "frontier": "b", "m4": "gamma"}
    ctx.figures["scaling_study"] = {
        "forms": {name: law["best"] for name, law in laws.items()},
        "exponents": {name: law["forms"][law["best"]]["fit"]["params"].get(exponent.get(law["best"], ""))
                      for name, law in laws.items() if law.get("best")},
        "verdict": (results.get("verdict") or {}).get("answer"),
        "targets": (results.get("targets") or {}).get("met")}
    rows = []
    for name, law in laws.items():
        if not law.get("best"):
            rows.append([*name.split("/"), "— (too few runs to hold any out)", "—", "—", "—", "—"])
            continue
        s = law["forms"][law["best"]]
        held, name_b = s["extrapolation"], exponent.get(law["best"])
        b = (f"{s['fit']['params'][name_b]:.3f} [{s['intervals'][name_b][0]:.3f}, {s['intervals'][name_b][1]:.3f}]"
             if name_b else "—")
        rows.append([*name.split("/"), law["best"], b, f"{held['median_abs_log']:.3f} / {held['max_abs_log']:.3f}",
                     f"{held['inside_prediction_band']:.0%}", f"{s['fit']['rmse_log']:.3f}"])
    figures = []
    for name in ("frontier.png", "isoflop.png", "residuals.png", "controls.png"):
        if (folder / name).is_file():
            shutil.copy(folder / name, ctx.dir / f"study_{name}")
            figures.append(f"![{name[:-4]}](study_{name})")
    config = results.get("config", {})
    targets = results.get("targets") or {}
    met = targets.get("met", {})
    target_text = ", ".join(f"{k} {'met' if v else 'missed'}" for k, v in met.items()) or "—"
    comparisons = "; ".join(f"{c['variant']}: {c['verdict']} (P = {c['p_better']:.2f})"
                            for c in results.get("comparisons", []))
    more = config.get("more_horizons") or {}
    more_text = (f" (and {', '.join(map(str, more['horizons']))} for {', '.join(more['variants'])})"
                 if more.get("variants") and more.get("horizons") else "")
    verdict = results.get("verdict")
    verdict_text = (f"**Type 2.1: {verdict['text']}** ({verdict['figures']})." if verdict
                    else "The Type 2.1 comparison has not run.")
    return f"""## 9. Error against compute: the scaling study

`configs/scaling_study.py` trained {', '.join(config.get('models', []))} with every conv
variant at widths {', '.join(f'{w:g}' for w in config.get('widths', []))}, each at horizons
{', '.join(map(str, config.get('horizons', [])))}{more_text} steps of batch {config.get('batch_size')} branched off
constant-rate runs, the rate chosen per horizon on a validation set, on `{config.get('dataset')}`
(results read from `{folder}`). Compute is
XLA's FLOP count of the train step times the steps. Each variant's law is the form that
extrapolated best: fitted on the runs of compute ≤ {config.get('holdout_fraction')} × the largest,
scored on the rest (median / maximum |log(ê/e)|, the share inside the 10–90% prediction band);
the exponent carries its 10–90% bootstrap interval:

{table(["model", "variant", "form", "exponent [10–90%]", "held out: median / max", "inside band", "RMSE log"], rows)}

Targets for the standard conv: {target_text}. Paired bootstrap of the frontier exponent against the
standard conv: {comparisons or "—"}.

{verdict_text}

{chr(10).join(figures)}
"""
