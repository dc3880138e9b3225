r"""Transposed convolution by its polyphase (sub-pixel) decomposition.

A transposed conv with stride ``s``, dilation ``d`` and kernel ``k`` scatters input
position ``i`` through tap ``t`` onto the full output position ``p = i s + t d``
(``0 <= p < F``, ``F = (I - 1) s + (k - 1) d + 1``); the result is the full output with
``lo`` positions cropped at the start and ``hi`` at the end (a negative crop appends zeros),
``O = F - lo - hi`` positions. Along each spatial axis, write an output position as
``o = q s + r`` with phase ``0 <= r < s``, and ``p = o + lo = (q + b) s + \rho`` with
``\rho = (r + lo) \bmod s``, ``b = \lfloor (r + lo) / s \rfloor``. Only the taps with
``t d \equiv \rho \pmod s`` reach phase ``r``: with ``g = \gcd(d, s)`` they exist only if
``g \mid \rho``, and then they are ``t_j = t_0 + j s/g`` (``j < J``, ``t_0 < s/g`` the
smallest), landing ``a_j = (t_j d - \rho)/s = A + j D`` input steps back, ``D = d/g``:

.. math::

    y[n, q s + r, k] = \sum_{j < J} \sum_{c \in g(k)} x[n, q + b - A - j D, c]\,
                       w[t_0 + j s/g, c - g_0(c), k],

a dense stride-1 cross-correlation of ``x`` with the reversed sub-kernel
``w[t_0 :: s/g][::-1]`` at rhs dilation ``D``, low padding ``A + (J - 1) D - b`` (negative:
a crop) and ``Q = \lceil O/s \rceil`` output positions. Each of the ``\prod s`` phases is one
``lax.conv_general_dilated`` without ``lhs_dilation`` (no multiply by an inserted zero);
a phase no tap reaches is zeros. The phases are interleaved (depth-to-space) into
``Q s`` positions per axis and cut to ``O``.

Letters: ``N`` batch, ``S`` the spatial sizes, ``C`` input maps, ``K`` filters, ``G`` groups.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax.numpy as jnp
from jax import lax

from jconv.kernels.einsum_conv import channels_last_dnums
from jconv.kernels.window import extent, transposed_size


class _AxisPhase(NamedTuple):
    """One output phase along one axis: the taps it uses and its conv padding."""

    taps: slice  # w[taps] along this axis, in increasing tap order
    dilation: int  # D = d / gcd(d, s)
    pads: tuple[int, int]  # conv padding of x, negative = crop


def _axis_phase(r, size, k, s, d, lo, q) -> _AxisPhase | None:
    """Output phase ``r`` along an axis of ``size`` inputs and ``q`` phase outputs; None: zeros."""
    rho, b = (r + lo) % s, (r + lo) // s
    g = math.gcd(d, s)
    step = s // g
    t0 = next((t for t in range(min(k, step)) if (t * d - rho) % s == 0), None)
    if t0 is None:  # no tap lands on this phase
        return None
    taps = range(t0, k, step)
    dil = d // g
    span = (len(taps) - 1) * dil
    pad_lo = (t0 * d - rho) // s + span - b
    pad_hi = q + span - size - pad_lo
    if pad_lo <= -size or pad_hi <= -size:  # the window misses every input position
        return None
    return _AxisPhase(slice(t0, k, step), dil, (pad_lo, pad_hi))


def phase_transpose_conv(x, w, stride, crops, dilation, groups=1, precision=None):
    """Channels-last transposed conv as ``prod(stride)`` dense stride-1 convs, interleaved.

    The same result as :func:`jconv.kernels.einsum_conv.scatter_transpose_conv`: tap ``t``
    adds ``x[i] @ w[t]`` at output position ``i*stride + t*dilation``, then ``crops``
    ``(low, high)`` are removed (negative values append zeros). Output phase ``r`` (position
    ``≡ r`` modulo ``stride``, per axis) is one ``lax.conv_general_dilated`` of ``x`` with
    the reversed taps that land on it; see the module docstring for the maths.

    Args:
      x: ``(N, *S, C)``.
      w: ``(*k, C/G, K)``.
      stride, dilation: one int per spatial axis.
      crops: ``(low, high)`` per spatial axis, removed from the full output
        ``(S - 1)*stride + (k - 1)*dilation + 1``.
      groups: ``G``; group ``g`` maps inputs ``g*C/G ...`` to filters ``g*K/G ...``.
      precision: passed to each ``lax`` conv.

    Returns:
      ``(N, *S', K)``, ``S' = (S - 1)*stride + (k - 1)*dilation + 1 - low - high``.

    See Also:
      :func:`jconv.kernels.einsum_conv.scatter_transpose_conv`, :func:`jconv.conv_transpose`.

    >>> import jax.numpy as jnp
    >>> from jconv.kernels.einsum_conv import scatter_transpose_conv
    >>> x = jnp.arange(2 * 5 * 4 * 6, dtype=jnp.float32).reshape(2, 5, 4, 6) / 100
    >>> w = jnp.cos(jnp.arange(4 * 3 * 3 * 4, dtype=jnp.float32)).reshape(4, 3, 3, 4)
    >>> args = ((2, 3), ((1, 1), (0, -1)), (1, 2), 2)  # stride, crops, dilation, groups
    >>> y = phase_transpose_conv(x, w, *args)
    >>> y.shape  # (5-1)*2 + (4-1)*1+1 - (1+1), (4-1)*3 + (3-1)*2+1 - (0-1)
    (2, 10, 15, 4)
    >>> bool(jnp.allclose(y, scatter_transpose_conv(x, w, *args), atol=1e-4))
    True
    """
    nd = x.ndim - 2
    n, sizes, k_out = x.shape[0], x.shape[1:-1], w.shape[-1]
    kernel = w.shape[:-2]
    outs = [transposed_size(i, extent(k, d), s, crop)
            for i, s, k, d, crop in zip(sizes, stride, kernel, dilation, crops)]
    qs = [-(-o // s) for o, s in zip(outs, stride)]  # phase outputs per axis, ceil(O/s)
    per_axis = [[_axis_phase(r, i, k, s, d, lo, q) for r in range(s)]
                for i, k, s, d, (lo, _), q in zip(sizes, kernel, stride, dilation, crops, qs)]
    dnums = channels_last_dnums(nd)
    phases = []
    for combo in itertools.product(*per_axis):
        if any(a is None for a in combo):
            phases.append(jnp.zeros((n, *qs, k_out), x.dtype))  # (N, *Q, K)
            continue
        sub = w[tuple(a.taps for a in combo)]  # (*J, C/G, K)
        sub = jnp.flip(sub, axis=tuple(range(nd)))  # (*J, C/G, K), taps reversed
        phases.append(lax.conv_general_dilated(
            x, sub, (1,) * nd, [a.pads for a in combo],
            rhs_dilation=[a.dilation for a in combo], dimension_numbers=dnums,
            feature_group_count=groups, precision=precision))  # (N, *Q, K)
    if len(phases) == 1:
        y = phases[0]  # (N, *Q, K), stride 1
    else:
        y = jnp.stack(phases).reshape(*stride, n, *qs, k_out)  # (*s, N, *Q, K)
        order = [nd] + [a for ax in range(nd) for a in (nd + 1 + ax, ax)] + [2 * nd + 1]
        y = y.transpose(order)  # (N, Q1, s1, Q2, s2, ..., K)
        y = y.reshape(n, *(q * s for q, s in zip(qs, stride)), k_out)  # (N, *Q*s, K)
    return y[(slice(None), *(slice(0, o) for o in outs))]  # (N, *S', K)
