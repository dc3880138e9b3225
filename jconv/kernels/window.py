r"""Window arithmetic along one axis and over all of them: the one place it is written.

A window of ``k`` taps at dilation ``d`` spans ``e = (k - 1) d + 1`` positions (its
*extent*). Sliding it with stride ``s`` over ``H`` positions padded by ``(lo, hi)`` gives
``O = (H + lo + hi - e) // s + 1`` outputs; output ``o``'s tap ``t`` reads input position
``o s + t d - lo``, a real input position when ``0 <= o s + t d - lo < H`` (*in bounds*).
A transposed conv reverses the roles: ``H`` inputs scatter onto
``(H - 1) s + e - lo - hi`` outputs.

Letters: ``N`` batch, ``H W`` (or ``D H W``) spatial, ``C`` input maps, ``K`` filters,
``S'`` the output positions.

>>> extent(3, 2), output_size(56, extent(3, 1), 1, same_pads(56, 3, 1))
(5, 56)
>>> transposed_size(4, extent(3, 1), 2, (1, 0))    # PyTorch: padding 1, output_padding 1
8
>>> in_bounds_taps(56, 3, pad_lo=1, out_size=56)   # SAME 3x3: the first and last lose one
166
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax.numpy as jnp
import numpy as np


def extent(kernel: int, dilation: int = 1) -> int:
    """Positions a dilated kernel spans: ``(k - 1) * d + 1``."""
    return (kernel - 1) * dilation + 1


def output_size(size, extent_: int, stride: int = 1, pads: tuple = (0, 0)):
    """Outputs of a window of ``extent_`` sliding over ``size`` positions padded by ``pads``.

    ``(size + lo + hi - extent) // stride + 1``; ``size`` may be traced.
    """
    lo, hi = pads
    return (size + lo + hi - extent_) // stride + 1


def same_pads(in_size: int, extent_: int, stride: int) -> tuple[int, int]:
    """``SAME`` padding (lax/TensorFlow rule): output ``ceil(in / stride)``, odd pad at the end."""
    out = -(-in_size // stride)
    total = max((out - 1) * stride + extent_ - in_size, 0)
    return total // 2, total - total // 2


def centered_pads(kernel: int) -> tuple[int, int]:
    """A window centred on each position (AlexNet's LRN): ``k//2`` before, ``(k-1)//2`` after."""
    return kernel // 2, (kernel - 1) // 2


def transposed_size(size, extent_: int, stride: int = 1, crops: tuple = (0, 0)):
    """Outputs of a transposed conv: ``(size - 1) * stride + extent - lo - hi``.

    ``size`` inputs scatter onto ``(size - 1) * stride + extent`` positions, of which
    ``crops = (lo, hi)`` are cut (a negative crop appends zeros). Uncropped, it is also
    the input span that ``size`` outputs of a forward window read.
    """
    lo, hi = crops
    return (size - 1) * stride + extent_ - lo - hi


def in_bounds_per_tap(size, kernel: int, stride: int = 1, dilation: int = 1, pad_lo: int = 0,
                      out_size=None) -> list:
    r"""For each tap ``t``, the outputs whose tap ``t`` lands on the unpadded input.

    .. math:: A_t = \#\{o < O : 0 \le o s + t d - \mathrm{lo} < H\}

    Args:
      size: input size ``H`` (may be traced).
      kernel, stride, dilation, pad_lo: the window along the axis (static ints).
      out_size: output size ``O`` (may be traced); default: no padding at the high end.

    Returns:
      ``k`` counts: Python ints, or integer arrays where ``size`` or ``out_size`` is traced.
    """
    if out_size is None:
        out_size = output_size(size, extent(kernel, dilation), stride, (pad_lo, 0))
    static = isinstance(size, int) and isinstance(out_size, int)
    maximum, minimum = (max, min) if static else (jnp.maximum, jnp.minimum)
    counts = []
    for t in range(kernel):
        offset = t * dilation - pad_lo  # tap t of output o reads input o*s + offset
        first = max(0, -(offset // stride))  # smallest o with o*s + offset >= 0
        last = minimum(out_size - 1, (size - 1 - offset) // stride)
        counts.append(maximum(0, last - first + 1))
    return counts


def in_bounds_taps(size: int, kernel: int, stride: int = 1, dilation: int = 1, pad_lo: int = 0,
                   out_size: int | None = None) -> int:
    """Taps on the unpadded input along one axis, summed over outputs: ``sum_t A_t``.

    The dense count is ``O * k``. See :func:`in_bounds_per_tap` for the arguments.
    """
    return sum(in_bounds_per_tap(size, kernel, stride, dilation, pad_lo, out_size))


def _in_bounds_per_output(size, k, s, d, lo, out) -> np.ndarray:
    """Taps in bounds for each output ``o < out``: ``#{t < k : 0 <= o*s + t*d - lo < size}``."""
    starts = np.arange(out) * s - lo  # input position of tap 0
    first = np.maximum(0, -(starts // d))  # smallest t with starts + t*d >= 0
    last = np.minimum(k - 1, (size - 1 - starts) // d)
    return np.maximum(0, last - first + 1)


@dataclasses.dataclass(frozen=True)
class Window:
    """Resolved geometry of a sliding window along the spatial axes.

    Attributes:
      in_sizes: input spatial sizes ``(H, W)``.
      kernel: kernel spatial sizes ``(kh, kw)``.
      stride, dilation: per axis.
      pads: explicit ``(low, high)`` padding per axis.
      out_sizes: output spatial sizes ``(H', W')``.

    >>> w = Window((4,), (3,), (1,), (1,), ((1, 1),), (4,))
    >>> w.dense_taps, w.in_bounds_taps, w.in_bounds_counts().tolist()
    (12, 10, [2, 3, 3, 2])
    """

    in_sizes: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    out_sizes: tuple[int, ...]

    @property
    def extent(self) -> tuple[int, ...]:
        """Span of the dilated kernel, ``(k - 1) * d + 1`` per axis."""
        return tuple(map(extent, self.kernel, self.dilation))

    @property
    def taps(self) -> int:
        return math.prod(self.kernel)

    @property
    def dense_taps(self) -> int:
        """Every tap at every output position: ``prod(S') * prod(k)``."""
        return math.prod(self.out_sizes) * self.taps

    @property
    def in_bounds_taps(self) -> int:
        """Taps on the unpadded input, summed over output positions: ``prod`` of the
        per-axis :func:`in_bounds_taps` (the axes are independent)."""
        return math.prod(
            in_bounds_taps(size, k, s, d, lo, out) for size, k, s, d, (lo, _), out
            in zip(self.in_sizes, self.kernel, self.stride, self.dilation, self.pads,
                   self.out_sizes))

    def in_bounds_counts(self) -> np.ndarray:
        """Taps on the unpadded input at each output position, a NumPy array ``(*S')``.

        Its sum is :attr:`in_bounds_taps`; an average pool without the padding divides by it.
        """
        per_axis = [_in_bounds_per_output(size, k, s, d, lo, out) for size, k, s, d, (lo, _), out
                    in zip(self.in_sizes, self.kernel, self.stride, self.dilation, self.pads,
                           self.out_sizes)]
        return functools.reduce(np.multiply.outer, per_axis)

    def stage(self, axis: int, in_sizes) -> Window:
        """This window along ``axis`` only, from ``in_sizes``: a spatially separable stage.

        It keeps the stride, dilation and padding along ``axis`` and is a one-tap identity
        window along every other axis, so the stages end on this window's grid.
        """
        def only_axis(value, other):
            return tuple(value[b] if b == axis else other[b] for b in range(len(in_sizes)))
        ones, no_pads = (1,) * len(in_sizes), ((0, 0),) * len(in_sizes)
        return Window(tuple(in_sizes), only_axis(self.kernel, ones),
                      only_axis(self.stride, ones), only_axis(self.dilation, ones),
                      only_axis(self.pads, no_pads), only_axis(self.out_sizes, tuple(in_sizes)))
