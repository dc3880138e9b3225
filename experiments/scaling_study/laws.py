r"""The scaling laws :mod:`.fits` fits, each as its optimiser sees it.

Inputs are normalised by their smallest value (``c = C / c0``; ``n = N / n0``, ``d = D / d0``) and
every parameter is in those units. Each law gives ``log ê`` and its Jacobian in the optimiser's
parameters ``θ`` (unbounded or simply bounded), and a grid of starts in the reported parameters.

* ``power``: ``e = a · c^(−b)``; ``θ = (log a, b)``.
* ``frontier`` (Zhai et al. 2022): ``e = e∞ + a · (c + d)^(−b)``, ``a > 0``, ``b > 0``,
  ``d ≥ 0``, ``0 ≤ e∞ < min e``; ``θ = (e∞, log a, b, log(1 + d))``, ``e∞`` and ``b`` bounded.
* ``m4`` (Alabdulmohsin et al. 2022): ``(e − e∞) / (ε₀ − e)^α = β · c^(−γ)``, ``ε₀`` the chance
  error, ``0 ≤ e∞ < e < ε₀``, ``α ≥ 0``, ``β, γ > 0``; ``θ = (e∞, α, log β, γ)``. The left side
  increases in ``e``, so a prediction solves for ``e`` per point: with ``e = e∞ + W σ(u)``,
  ``W = ε₀ − e∞``, the equation is ``g(u) = log W + log σ(u) − α (log W + log σ(−u)) − log β
  + γ log c = 0``, ``g' = σ(−u) + α σ(u) > 0`` and ``g'' = (α − 1) σ(u) σ(−u)`` of one sign, so
  Newton's method from the asymptotes converges monotonically (a few steps). The Jacobian is
  the implicit function's: ``∂e/∂θ = −(∂F/∂θ) / (∂F/∂e)`` with ``F = log(e − e∞) − α log(ε₀ − e)
  − log β + γ log c``.
* ``joint`` (Hoffmann et al. 2022): ``e = E + A / n^α + B / d^β``, fitted in the LSE form
  ``log e = LSE(a − α log n, b − β log d, log E)``; ``θ = (log E, a, α, b, β)``, ``α, β ∈ [0, 10]``.
* ``kaplan`` (Kaplan et al. 2020, eq. 1.5, with an irreducible ``E``): ``e = E + (A / n^α +
  B / d)^β``, in which the size and data terms interact (a smaller model gains less from
  more steps); ``log e = LSE(log E, β · LSE(a − α log n, b − log d))``; ``θ = (log E, a, α,
  b, β)``, ``α ∈ [0, 10]``, ``β ∈ [10⁻³, 10]``.

:data:`JOINT_FORMS` take ``(N, D)``; the others compute ``C``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Form:
    """A law: its reported parameters and how the optimiser sees them.

    ``internal``/``natural`` map reported parameters to the optimiser's ``θ`` and back;
    ``logpred(θ, data)`` is ``(log ê, ∂ log ê / ∂θ)``; ``bounds(data)`` bounds ``θ``;
    ``grid(data)`` lists the per-parameter start values (reported units) whose product is the grid.
    """

    name: str
    params: tuple[str, ...]
    internal: Callable
    natural: Callable
    logpred: Callable
    bounds: Callable
    grid: Callable


@dataclass
class Data:
    e: np.ndarray
    le: np.ndarray
    lc: np.ndarray  # log of normalised compute (joint law: log n + log d)
    c: np.ndarray | None = None
    ln: np.ndarray | None = None
    ld: np.ndarray | None = None
    eps0: float | None = None

    @property
    def emin(self) -> float:
        return float(self.e.min())

    def anchor(self) -> float:
        """The median error at the smallest compute: the scale of the grid's amplitudes."""
        return float(np.median(self.e[self.lc <= self.lc.min() + 1e-9]))


def _power_logpred(th, data):
    return th[0] - th[1] * data.lc, np.stack([np.ones_like(data.lc), -data.lc], axis=1)


def _frontier_logpred(th, data):
    einf, la, b, s = th
    cd = data.c + np.expm1(s)
    L = np.log(cd)
    P = np.exp(la - b * L)
    p = einf + P
    q = P / p
    jac = np.stack([1.0 / p, q, -L * q, -b * q * np.exp(s) / cd], axis=1)
    return np.log(p), jac


def _m4_solve(einf, alpha, R, eps0):
    """``u`` with ``g(u) = 0`` (module docstring), vectorised Newton from the asymptotes."""
    lw = np.log(eps0 - einf)
    v = R - (1.0 - alpha) * lw
    u = np.clip(np.where(v <= 0, v, v / max(alpha, 1e-3)), -60.0, 60.0)
    for _ in range(100):
        ls_p, ls_m = -np.logaddexp(0.0, -u), -np.logaddexp(0.0, u)
        g = lw + ls_p - alpha * (lw + ls_m) - R
        new = np.clip(u - g / (np.exp(ls_m) + alpha * np.exp(ls_p)), -60.0, 60.0)
        done = np.max(np.abs(new - u)) < 1e-12
        u = new
        if done:
            break
    return u


def _m4_logpred(th, data):
    einf, alpha, lbeta, gamma = th
    eps0 = data.eps0
    u = _m4_solve(einf, alpha, lbeta - gamma * data.lc, eps0)
    w = eps0 - einf
    lo, hi = w / (1.0 + np.exp(-u)), w / (1.0 + np.exp(u))  # e − e∞ and ε₀ − e
    e = einf + lo
    fe = 1.0 / lo + alpha / hi
    jac = np.stack([1.0 / lo, np.log(hi), np.ones_like(lo), -data.lc], axis=1) / (fe * e)[:, None]
    return np.log(e), jac


def _joint_logpred(th, data):
    le, a, alpha, b, beta = th
    z = np.stack([a - alpha * data.ln, b - beta * data.ld, np.full_like(data.ln, le)], axis=1)
    lp = np.logaddexp.reduce(z, axis=1)
    w = np.exp(z - lp[:, None])
    return lp, np.stack([w[:, 2], w[:, 0], -w[:, 0] * data.ln, w[:, 1], -w[:, 1] * data.ld], axis=1)


def _kaplan_logpred(th, data):
    le, a, alpha, b, beta = th
    inner = np.stack([a - alpha * data.ln, b - data.ld], axis=1)
    u = np.logaddexp.reduce(inner, axis=1)
    wi = np.exp(inner - u[:, None])
    z = beta * u
    lp = np.logaddexp(le, z)
    pe, pz = np.exp(le - lp), np.exp(z - lp)
    return lp, np.stack([pe, pz * beta * wi[:, 0], -pz * beta * wi[:, 0] * data.ln,
                         pz * beta * wi[:, 1], pz * u], axis=1)


def _below_min(data):
    return (0.0, data.emin * (1 - 1e-6))


def _frontier_grid(data):
    e1 = data.anchor()
    fr, bs, ds, ms = (0.0, 0.5, 0.9), (0.1, 0.3, 0.7, 1.5), (0.0, 1.0, 10.0, 100.0), (0.3, 1.0, 3.0)
    return [(f * data.emin, m * (e1 - f * data.emin) * (1 + d) ** b, b, d)
            for f, b, d, m in itertools.product(fr, bs, ds, ms)]


def _m4_grid(data):
    e1 = min(data.anchor(), 0.5 * (data.e.max() + data.eps0))
    fr, als, gs, ms = (0.0, 0.5, 0.9), (0.0, 0.5, 1.0, 2.0), (0.1, 0.3, 0.7, 1.5), (0.3, 1.0, 3.0)
    return [(f * data.emin, al, m * (e1 - f * data.emin) / (data.eps0 - e1) ** al, g)
            for f, al, g, m in itertools.product(fr, als, gs, ms)]


def _joint_grid(data):
    top, low = np.log(data.e.max()), np.log(data.emin)
    amps, exps = (top - 2.5, top - 1.0, top + 0.3), (0.2, 0.5, 1.2)
    return [(np.exp(le), np.exp(a), al, np.exp(b), be)
            for le, a, al, b, be in itertools.product((low - 3.0, low - 0.7), amps, exps, amps, exps)]


def _kaplan_grid(data):
    top, low = np.log(data.e.max()), np.log(data.emin)
    return [(np.exp(le), np.exp(top / be + s), al, np.exp(top / be + t), be)
            for le, s, al, t, be in itertools.product((low - 3.0, low - 0.7), (-1.5, 0.0, 1.0),
                                                     (0.3, 1.0, 2.0), (-1.5, 0.0, 1.0), (0.3, 0.7, 1.5))]


def _power_grid(data):
    l1 = np.log(data.anchor())
    return [(np.exp(l1 + s), b) for s, b in itertools.product((-1.0, 0.0, 1.0), (0.0, 0.3, 1.0))]


FORMS: dict[str, Form] = {
    "power": Form("power", ("a", "b"),
                  lambda p: np.array([np.log(p[0]), p[1]]),
                  lambda t: np.array([np.exp(t[0]), t[1]]),
                  _power_logpred, lambda data: [(-50.0, 50.0), (-20.0, 20.0)], _power_grid),
    "frontier": Form("frontier", ("e_inf", "a", "b", "d"),
                     lambda p: np.array([p[0], np.log(p[1]), p[2], np.log1p(p[3])]),
                     lambda t: np.array([t[0], np.exp(t[1]), t[2], np.expm1(t[3])]),
                     _frontier_logpred,
                     lambda data: [_below_min(data), (-30.0, 30.0), (1e-6, 10.0), (0.0, 25.0)],
                     _frontier_grid),
    "m4": Form("m4", ("e_inf", "alpha", "beta", "gamma"),
               lambda p: np.array([p[0], p[1], np.log(p[2]), p[3]]),
               lambda t: np.array([t[0], t[1], np.exp(t[2]), t[3]]),
               _m4_logpred,
               lambda data: [_below_min(data), (0.0, 20.0), (-30.0, 30.0), (1e-6, 10.0)], _m4_grid),
    "joint": Form("joint", ("E", "A", "alpha", "B", "beta"),
                  lambda p: np.array([np.log(p[0]), np.log(p[1]), p[2], np.log(p[3]), p[4]]),
                  lambda t: np.array([np.exp(t[0]), np.exp(t[1]), t[2], np.exp(t[3]), t[4]]),
                  _joint_logpred,
                  lambda data: [(-30.0, np.log(data.emin)), (-30.0, 30.0), (0.0, 10.0),
                                (-30.0, 30.0), (0.0, 10.0)], _joint_grid),
    "kaplan": Form("kaplan", ("E", "A", "alpha", "B", "beta"),
                   lambda p: np.array([np.log(p[0]), np.log(p[1]), p[2], np.log(p[3]), p[4]]),
                   lambda t: np.array([np.exp(t[0]), np.exp(t[1]), t[2], np.exp(t[3]), t[4]]),
                   _kaplan_logpred,
                   lambda data: [(-30.0, np.log(data.emin)), (-60.0, 60.0), (0.0, 10.0),
                                 (-60.0, 60.0), (1e-3, 10.0)], _kaplan_grid),
}

JOINT_FORMS = ("joint", "kaplan")
"""The laws of ``(N, D)``: model size and samples seen, fitted to every point."""
