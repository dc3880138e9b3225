"""Why widening two chained conv layers costs quadratically, counted and timed for every layer type.

Layer 1 maps the grey image to k1 maps (3×3, Type 2.2); layer 2 maps them to k2 maps with
5×5 filters, read as each type of the question (:mod:`.model`). Sweep (a) widens both
(k1 = k2 = k), sweep (b) layer 2 alone (k1 fixed). For each (sweep, variant) the run

* counts: the analytic FLOPs and bytes (one ``jax.vmap`` of the cost model over the widths)
  and XLA's FLOPs of the kernels timed (:func:`.timing.counted_flops`);
* times, where arithmetic dominates (:mod:`.timing`): one fixed kernel per curve (what
  ``auto`` picks at the largest width; where ``auto`` would switch kernels between widths,
  an ``auto`` curve is timed too), a batch per point so that every call does the same work
  of at least ``min_call_s`` at this machine's peak, ``repeats`` interleaved samples, for
  the forward and the forward+backward pass; the peaks (a large matmul, oneDNN's conv, the
  memory bandwidth) are measured in the same run;
* fits the log-log slope of time per image against k, with a bootstrap interval and R², and
  gives each slope its verdict (:mod:`.verdicts`): it follows FLOPs, or the measured reason
  why not. Every point is timed or reported with its reason.
"""

from __future__ import annotations

from pathlib import Path

from experiments.quadratic_cost import model, timing
from experiments.quadratic_cost.model import LABELS, SWEEPS
from experiments.quadratic_cost.tables import summarize
from experiments.quadratic_cost.timing import PASSES
from jconv.runner import ConfigError, Store, progress

__all__ = ["LABELS", "PASSES", "SWEEPS", "check", "plan", "run", "summarize"]


def _positive_ints(value) -> bool:
    values = value if isinstance(value, (tuple, list)) else (value,)
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                for v in values)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def check(config, prefix: str = "--config.") -> None:
    """Raises ConfigError for a setting the run cannot use, naming it (``prefix`` + key), before
    anything is written."""
    unknown = [v for v in config.variants if v not in LABELS]
    if not config.variants or unknown:
        raise ConfigError(f"{prefix}variants={tuple(config.variants)}: expected one or more of "
                          f"{tuple(LABELS)}")
    for key in ("widths", "fixed_k1", "height", "width", "kernel1", "kernel2", "repeats", "max_repeats",
                "peak_size", "peak_bytes", "n_resamples"):
        if not _positive_ints(config[key]):
            expected = "one or more ints ≥ 1" if key == "widths" else "an int ≥ 1"
            raise ConfigError(f"{prefix}{key}={config[key]!r}; expected {expected}")
    if _positive_ints(config.repeats) and _positive_ints(config.max_repeats) and config.max_repeats < config.repeats:
        raise ConfigError(f"{prefix}max_repeats={config.max_repeats!r}; expected an int ≥ "
                          f"{prefix}repeats={config.repeats}")
    for key in ("reduce_ratio", "min_call_s", "max_call_bytes"):
        if not _positive(config[key]):
            raise ConfigError(f"{prefix}{key}={config[key]!r}; expected a number > 0")
    if not (config.peak_convs and all(isinstance(p, (tuple, list)) and len(p) == 2
                                      and _positive_ints(tuple(p)) for p in config.peak_convs)):
        raise ConfigError(f"{prefix}peak_convs={config.peak_convs!r}; expected one or more "
                          "(size, maps) pairs of ints ≥ 1")
    import skimage.data

    if not callable(getattr(skimage.data, str(config.image), None)) or config.image.startswith("_"):
        raise ConfigError(f"{prefix}image={config.image!r}; expected the name of a grey image of "
                          "skimage.data, such as 'camera' or 'coins'")


def curve_kernels(sweep: str, variant: str, config) -> tuple[dict, list[dict]]:
    """The fixed kernels of a curve (``auto``'s at the largest width) and ``auto``'s at each width."""
    auto = [model.kernels(variant, *model.widths_of(sweep, k, config), config)
            for k in config.widths]
    return auto[list(config.widths).index(max(config.widths))], auto


def curves_to_time(config) -> list[tuple[str, str, str]]:
    """``(sweep, variant, kernel)`` of every timed curve: ``fixed`` always, ``auto`` where its
    kernels change between widths."""
    result = []
    for sweep in SWEEPS:
        for variant in config.variants:
            fixed, auto = curve_kernels(sweep, variant, config)
            result.append((sweep, variant, "fixed"))
            if any(a != fixed for a in auto):
                result.append((sweep, variant, "auto"))
    return result


def plan(config) -> list[dict]:
    """The key of every record the run makes: the peaks, then per curve its counts and
    each pass's timings."""
    keys = [{"measure": "peak"}]
    for sweep, variant, kernel in curves_to_time(config):
        for measure in ("count", *PASSES):
            keys.append({"sweep": sweep, "variant": variant, "kernel": kernel, "measure": measure})
    return keys


def _units(key: dict, config) -> int:
    return 1 if key["measure"] == "peak" else len(config.widths)


def _points(key: dict, config, store: Store, analytic: dict) -> list[dict]:
    """The widths of ``key``'s curve with their kernels, FLOPs (XLA's count of the kernels, or
    the analytic count where XLA gives none) and bytes per image."""
    fixed, auto = curve_kernels(key["sweep"], key["variant"], config)
    counts = find(store.records(), dict(key, measure="count"))["xla_flops"]
    curve = analytic[key["sweep"], key["variant"]]
    points = []
    for i, k in enumerate(config.widths):
        k1, k2 = model.widths_of(key["sweep"], k, config)
        flops = counts[i] if counts[i] else int(curve["flops"][i])
        points.append({"k1": k1, "k2": k2, "impls": fixed if key["kernel"] == "fixed" else auto[i],
                       "flops": flops, "bytes": int(curve["bytes"][i])})
    return points


def measure(key: dict, config, store: Store, analytic: dict) -> dict:
    """The values of one record of :func:`plan`."""
    if key["measure"] == "peak":
        return timing.peaks(config)
    if key["measure"] == "count":
        fixed, auto = curve_kernels(key["sweep"], key["variant"], config)
        flops = [timing.counted_flops(key["variant"], *model.widths_of(key["sweep"], k, config),
                                      fixed if key["kernel"] == "fixed" else auto[i], config)
                 for i, k in enumerate(config.widths)]
        return {"xla_flops": flops}
    peak = find(store.records(), {"measure": "peak"})
    work = max(peak["matmul_gflops"], peak["conv_gflops"]) * 1e9 * config.min_call_s
    points = timing.time_points(_points(key, config, store, analytic), key["variant"],
                                key["measure"], work, config)
    return {"work_flops": work, "points": points}


def find(records: list[dict], key: dict) -> dict:
    """The record of ``key``."""
    return next(r for r in records if r["key"] == key)


def run(config, workdir: Path) -> dict:
    check(config)
    workdir = Path(workdir)
    store = Store(workdir)
    analytic = model.curves(config)
    todo = plan(config)
    done = sum(_units(k, config) for k in todo if store.has(k))
    with progress(sum(_units(k, config) for k in todo), done, "quadratic_cost") as bar:
        for key in todo:
            if store.has(key):
                continue
            bar.set_postfix_str(" ".join(str(v) for v in key.values()))
            store.add(key, measure(key, config, store, analytic))
            bar.update(_units(key, config))
    return summarize(config, store.records(), analytic, workdir)
