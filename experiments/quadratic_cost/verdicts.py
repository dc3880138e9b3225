"""Slopes with intervals, and what each measured slope says about its FLOP slope.

:func:`fit_slope` fits ``log(time) = a + s·log(k)`` through the median of each width's
repeats, over the upper half of the widths (as :func:`jconv.cost.loglog_slope`), and gives
``s`` a 95% bootstrap interval: SciPy's :func:`scipy.stats.bootstrap` resamples the repeats
of each width apart (a stratified bootstrap; percentile interval) and refits. R² is that of
the fit through the medians.

:func:`verdict` reads a slope against the candidates it could follow, in this order:

1. ``noisy``: an interval wider than :data:`NOISY_INTERVAL` cannot tell the candidates apart.
2. ``follows_flops``: the FLOP slope lies in the interval, widened by :data:`TOLERANCE`.
3. ``kernel_switch``: ``auto`` changes kernels inside the fitted widths.
4. ``kernel_flops``: the kernel does other FLOPs than the definition (Type 2.1's sum of
   the maps), and the slope follows XLA's count of the kernel's own.
5. ``memory_bound``: the slope follows the bytes moved, and the arithmetic intensity
   (FLOPs per byte) is below the machine balance (peak GFLOP/s per GB/s, both measured) over
   the fitted widths or part of them; the achieved GB/s are shown.
6. ``overhead``: the time per image does not grow with k: a fixed cost dominates.
7. ``partly_memory_bound``: between the bytes' slope and the FLOPs', the intensity below the
   balance, or crossing it within the fitted widths (memory-bound at the narrow end, compute-bound
   at the wide end: the roofline's time lies between the two).
8. ``efficiency``: none of these; the GFLOP/s achieved changes with k, and the text says
   by how much (the time slope is the FLOP slope minus the slope of GFLOP/s).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.stats

TOLERANCE = 0.1
"""Slope units by which the 95% interval is widened before it is read against a candidate."""
NOISY_INTERVAL = 0.5
"""A 95% interval wider than this is too noisy to explain."""
RETIME_INTERVAL = 0.25
"""A curve whose 95% interval is wider than this is timed again (up to ``max_repeats``)."""
NOISY_POINT = 0.5
"""A point whose repeats spread (max − min) by more than this fraction of their median is noisy."""


def noisy(samples) -> bool:
    """Whether repeated times spread (max − min) by more than :data:`NOISY_POINT` of their median.

    >>> noisy([1.0, 1.1, 0.95]), noisy([1.0, 1.1, 2.0])
    (False, True)
    """
    t = np.asarray(samples, dtype=np.float64)
    return bool((t.max() - t.min()) / np.median(t) > NOISY_POINT)
EXPLAINED = ("follows_flops", "kernel_switch", "kernel_flops", "memory_bound", "overhead",
             "partly_memory_bound")
TARGETS = {("uniform", "type2_2"): (1.8, 2.2), ("uniform", "type1"): (1.8, 2.2),
           ("k2_only", "type2_2"): (0.85, 1.15)}
"""The main job's targets: time slope ranges (forward and forward+backward) on 2 cores."""


@dataclasses.dataclass(frozen=True)
class Fit:
    """A log-log slope, its 95% interval (``None`` without two repeats a width) and R²."""

    slope: float
    lo: float | None
    hi: float | None
    r2: float
    ks: tuple[int, ...]

    def contains(self, value: float, tolerance: float = 0.0) -> bool:
        lo, hi = (self.slope, self.slope) if self.lo is None else (self.lo, self.hi)
        return lo - tolerance <= value <= hi + tolerance

    @property
    def width(self) -> float | None:
        return None if self.lo is None else self.hi - self.lo

    def text(self) -> str:
        if self.lo is None:
            return f"{self.slope:.2f} (no interval: one repeat a width)"
        return f"{self.slope:.2f} [{self.lo:.2f}, {self.hi:.2f}]"


def fit_range(ks) -> np.ndarray:
    """Which widths a slope is fitted over: ``k ≥ sqrt(min·max)``, the upper half of a
    geometric range (all of them where that leaves fewer than two)."""
    logk = np.log(np.asarray(ks, dtype=np.float64))
    keep = logk >= (logk.min() + logk.max()) / 2
    return keep if keep.sum() >= 2 else np.ones_like(keep)


def _slope_statistic(logk: np.ndarray):
    centred = logk - logk.mean()
    denominator = float(centred @ centred)

    def statistic(*samples, axis=-1):
        y = np.stack([np.log(np.median(s, axis=axis)) for s in samples], axis=-1)
        return (y - y.mean(axis=-1, keepdims=True)) @ centred / denominator
    return statistic


def fit_slope(ks, samples, *, n_resamples: int = 2000, confidence: float = 0.95,
              seed: int = 0, upper_half: bool = True) -> Fit | None:
    """The slope of log median time against log k, with its bootstrap interval and R².

    Args:
      ks: the widths, one per sample.
      samples: per width, the repeated times (any unit; positive).
      upper_half: fit over :func:`fit_range` only.

    Returns:
      a :class:`Fit`, or ``None`` with fewer than two widths.
    """
    ks = np.asarray(ks, dtype=np.float64)
    samples = [np.asarray(s, dtype=np.float64) for s in samples]
    if len(samples) != ks.size:
        raise ValueError(f"{ks.size} widths but {len(samples)} samples")
    if upper_half and ks.size >= 2:
        keep = fit_range(ks)
        ks, samples = ks[keep], [s for s, k in zip(samples, keep) if k]
    if ks.size < 2 or len(set(ks.tolist())) < 2:
        return None
    logk = np.log(ks)
    statistic = _slope_statistic(logk)
    slope = float(statistic(*samples))
    y = np.log([np.median(s) for s in samples])
    residual = y - (y.mean() + slope * (logk - logk.mean()))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / total if total > 0 else 1.0
    lo = hi = None
    if min(s.size for s in samples) >= 2:
        result = scipy.stats.bootstrap(tuple(samples), statistic, n_resamples=n_resamples,
                                       vectorized=True, paired=False, axis=-1,
                                       confidence_level=confidence, method="percentile",
                                       rng=np.random.default_rng(seed))
        lo, hi = (float(v) for v in result.confidence_interval)
        lo, hi = min(lo, slope), max(hi, slope)
    return Fit(slope, lo, hi, r2, tuple(int(k) for k in ks))


@dataclasses.dataclass(frozen=True)
class Verdict:
    code: str
    text: str


def _range(values, fmt: str, unit: str = "") -> str:
    return f"{format(values[0], fmt)} → {format(values[-1], fmt)}{unit}"


def verdict(fit: Fit | None, flop_slope: float, *, kernel_flop_slope: float | None = None,
            kernel: str = "the kernel", bytes_slope: float | None = None, bytes_per_image=None,
            intensity=None, balance: float | None = None, gflops=None, gbs=None,
            bandwidth: float | None = None, switches: tuple[str, ...] = (),
            tolerance: float = TOLERANCE) -> Verdict:
    """What the time slope ``fit`` follows (see the module docstring for the order).

    Args:
      fit: the time slope, or None (fewer than two widths timed).
      flop_slope: the analytic FLOP slope over the same widths.
      kernel_flop_slope: the slope of XLA's count of the FLOPs ``kernel`` runs.
      bytes_slope, bytes_per_image: the slope of the bytes moved and their values over the
        fitted widths.
      intensity: FLOPs per byte over the fitted widths; ``balance`` the machine's
        (peak FLOP/s over bandwidth).
      gflops, gbs: GFLOP/s and GB/s (of ``bytes_per_image``) achieved over the fitted widths;
        ``bandwidth`` the machine's GB/s.
      switches: ``"k=64: lax → onednn"`` for each change of ``auto``'s kernel in the range.
    """
    if fit is None:
        return Verdict("no_fit", "no slope: fewer than two widths timed (see the missing points)")
    low_intensity = (intensity is not None and balance is not None
                     and max(intensity) < balance)
    memory = (f"arithmetic intensity {_range(intensity, '.1f')} FLOP/B, below the machine "
              f"balance {balance:.1f} FLOP/B" if low_intensity else "")
    moved = (f"bytes moved grow like k^{bytes_slope:.2f} "
             f"({_range([b / 1e6 for b in bytes_per_image], '.3g', ' MB')} per image)"
             if bytes_slope is not None and bytes_per_image is not None else "")
    rate = f"GFLOP/s {_range(gflops, '.1f')}" if gflops is not None else ""
    if fit.width is not None and fit.width > NOISY_INTERVAL:
        return Verdict("noisy", f"too noisy to judge: 95% interval {fit.width:.2f} wide "
                                f"(> {NOISY_INTERVAL}); rerun with more repeats or a quieter machine")
    if fit.contains(flop_slope, tolerance):
        extra = f"; memory-bound as well ({memory}), but bytes grow like FLOPs" if (
            low_intensity and bytes_slope is not None
            and abs(bytes_slope - flop_slope) <= tolerance) else ""
        return Verdict("follows_flops", f"time follows FLOPs (FLOP slope {flop_slope:.2f} "
                                        f"within the interval ±{tolerance}){extra}")
    if switches:
        return Verdict("kernel_switch", f"kernel switch inside the fitted widths ({'; '.join(switches)})")
    if (kernel_flop_slope is not None and abs(kernel_flop_slope - flop_slope) > tolerance
            and fit.contains(kernel_flop_slope, tolerance)):
        return Verdict("kernel_flops", f"time follows the FLOPs {kernel} runs (XLA's count, "
                                       f"slope {kernel_flop_slope:.2f}), not the definition's "
                                       f"({flop_slope:.2f})")
    if bytes_slope is not None and fit.contains(bytes_slope, tolerance) and (
            intensity is None or balance is None or min(intensity) < balance):
        crossing = (f"arithmetic intensity {_range(intensity, '.1f')} FLOP/B, crossing the "
                    f"machine balance {balance:.1f} FLOP/B" if intensity is not None
                    and balance is not None and not low_intensity else memory)
        achieved = (f"achieved {_range(gbs, '.1f', ' GB/s')}" + (
            f" of {bandwidth:.1f} measured" if bandwidth else "") if gbs is not None else "")
        return Verdict("memory_bound", "memory-bound: time follows the bytes moved; " + "; ".join(
            t for t in (moved or f"bytes slope {bytes_slope:.2f}", achieved, crossing, rate) if t))
    if fit.contains(0.0, tolerance):
        return Verdict("overhead", f"overhead: time per image does not grow with k (slope "
                                   f"{fit.slope:.2f}); a fixed cost per image dominates"
                                   + (f" ({rate})" if rate else ""))
    crossing = (intensity is not None and balance is not None and not low_intensity
                and min(intensity) < balance)
    if (bytes_slope is not None and (low_intensity or crossing)
            and min(bytes_slope, flop_slope) < fit.slope < max(bytes_slope, flop_slope)):
        why = memory if low_intensity else (
            f"arithmetic intensity {_range(intensity, '.1f')} FLOP/B crosses the machine balance "
            f"{balance:.1f} FLOP/B: below it time follows the bytes, above it the FLOPs")
        return Verdict("partly_memory_bound", "partly memory-bound: slope between the bytes' "
                                              f"({bytes_slope:.2f}) and the FLOPs' "
                                              f"({flop_slope:.2f}); " + "; ".join(
                                                  t for t in (why, rate) if t))
    gflop_slope = flop_slope - fit.slope
    direction = "fall" if gflop_slope < 0 else "rise"
    held = (f"; arithmetic intensity {_range(intensity, '.1f')} FLOP/B"
            if intensity is not None else "")
    return Verdict("efficiency", f"unexplained by FLOPs, bytes or overhead: the kernel's GFLOP/s "
                                 f"{direction} with k (like k^{gflop_slope:.2f}"
                                 + (f", {rate}" if rate else "") + ")" + held
                                 + (f"; {moved}" if moved else ""))


def target_lines(rows: list[dict]) -> list[str]:
    """The main job's targets read off the slope rows (``sweep, variant, pass, fit,
    verdict``): met, or missed and why."""
    lines = []
    for (sweep, variant), (lo, hi) in TARGETS.items():
        for row in rows:
            if (row["sweep"], row["variant"]) != (sweep, variant):
                continue
            fit, name = row["fit"], f"{sweep} {variant} {row['pass']}"
            if fit is None:
                lines.append(f"- MISSED {name}: target [{lo}, {hi}], no slope: {row['verdict'].text}")
            elif lo <= fit.slope <= hi:
                lines.append(f"- met {name}: {fit.text()} in [{lo}, {hi}]")
            else:
                lines.append(f"- MISSED {name}: {fit.text()} outside [{lo}, {hi}]: "
                             f"{row['verdict'].text}")
    negative = [r for r in rows if r["fit"] is not None and r["fit"].slope < 0]
    lines.append("- " + ("MISSED no negative slope: " + ", ".join(
        f"{r['sweep']} {r['variant']} {r['pass']} {r['fit'].text()}" for r in negative)
        if negative else "met: no negative slope"))
    bare = [r for r in rows if r["fit"] is not None and r["fit"].lo is None]
    lines.append("- " + (f"MISSED every slope with its interval: {len(bare)} without (one "
                         "repeat a width)" if bare else "met: every slope has its interval"))
    unexplained = [r for r in rows if r["variant"] in ("type2_1", "separable")
                   and r["verdict"].code not in EXPLAINED]
    lines.append("- " + ("MISSED Type 2.1 and separable deviations explained: " + ", ".join(
        f"{r['sweep']} {r['variant']} {r['pass']} ({r['verdict'].code})" for r in unexplained)
        if unexplained else "met: every Type 2.1 and separable deviation carries a measured reason"))
    return lines
