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
    ctx.figures["scaling_study"] = {
        "exponents": {name: law["forms"][law["best"]].get("b") for name, law in laws.items()},
        "forms": {name: law["best"] for name, law in laws.items()},
        "verdict": (results.get("verdict") or {}).get("answer"),
        "frontier": results.get("frontier")}
    rows = []
    for name, law in laws.items():
        form = law["forms"][law["best"]]
        b = f"{form['b']:.2f} ± {form['b_se']:.2f}" if "b" in form else "—"
        rows.append([*name.split("/"), law["best"], b,
                     f"{form['e_inf']:.3f}" if "e_inf" in form else "—",
                     "—" if form["r2"] is None else f"{form['r2']:.2f}"])
    figures = []
    for name in ("accuracy.png", "laws.png", "throughput.png", "controls.png"):
        if (folder / name).is_file():
            shutil.copy(folder / name, ctx.dir / f"study_{name}")
            figures.append(f"![{name[:-4]}](study_{name})")
    config = results.get("config", {})
    frontier = "; ".join(f"{m}: {', '.join(points)}" for m, points in (results.get("frontier") or {}).items())
    verdict = results.get("verdict")
    verdict_text = (f"**Type 2.1: {verdict['text']}** ({verdict['figures']})." if verdict
                    else "The Type 2.1 comparison has not run.")
    return f"""## 9. Accuracy against compute: the scaling study

`configs/scaling_study.py` trained {', '.join(config.get('models', []))} with every conv
variant at widths {', '.join(f'{w:g}' for w in config.get('widths', []))} and seeds
{', '.join(map(str, config.get('seeds', [])))} on `{config.get('dataset')}`, {config.get('steps')} steps
of batch {config.get('batch_size')} each (results read from `{folder}`). The law of each
variant is the form with the lowest AICc fitted to test error against training FLOPs; b is
its exponent ± standard error:

{table(["model", "variant", "form", "b", "e∞", "R²"], rows)}

Pareto frontier (MACs per image against mean error): {frontier or "—"}.

{verdict_text}

{chr(10).join(figures)}
"""
