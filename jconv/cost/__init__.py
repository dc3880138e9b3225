r"""Parameters, multiply-adds, FLOPs and bytes of every op, as pure traceable functions of shapes.

Each public op ``jconv.<op>`` has a cost function of the same name here that takes the
shapes of its array arguments instead of the arrays, the op's own keyword arguments
(minus ``impl`` and ``precision``), and ``dtype="float32"`` and ``bias=True`` (as
:func:`jconv.param_count`). It returns a :class:`Cost`.

Letters: ``N`` batch, ``H W`` (or ``D H W``) spatial, ``C`` input maps, ``K`` filters,
``H' W'`` output positions; kernels ``H W I O``.

**Conventions.**

* ``flops = 2 * macs``: a multiply-add is two floating-point operations, as XLA's
  ``cost_analysis()`` and ``torch.utils.flop_counter`` count. fvcore, thop, ptflops and
  torchinfo report multiply-adds and (fvcore) call them FLOPs: compare their figure with
  ``macs``. Bias adds and activation functions are not counted.
* *Dense* (``macs``, ``flops``): every kernel tap at every output position, the textbook
  formula ``N * H' * W' * K * kh * kw * C/groups``.
  *In-bounds* (``macs_in_bounds``, ``flops_in_bounds``): only the taps that land on the
  unpadded input, which is what XLA's CPU ``cost_analysis()`` counts for a convolution.
  The axes are independent, so with one axis' in-bounds tap count
  ``A = sum_{o < H'} sum_{t < kh} [0 <= o*s + t*d - pad_lo < H]`` (:func:`in_bounds_taps`)
  the in-bounds count is ``N * A_h * A_w * C/groups * K``. With a ``padding_mode`` other
  than ``"zeros"`` the padded values are real data (the op pads with ``jnp.pad`` first),
  so in-bounds equals dense.
* ``weight_bytes = params * itemsize(dtype)`` (biases included when ``bias=True``);
  ``activation_bytes = (input elements + output elements) * itemsize(dtype)``, the op's own
  input and output only: the intermediate maps of a separable op are not counted.
* Pooling and LRN have ``macs = 0`` and count one operation per window tap per output
  element: a max pool's ``kh*kw`` comparisons (the first against the reduction's initial
  value), an average pool's ``kh*kw - 1`` adds and one divide, a global average's
  ``H*W - 1`` adds and one divide, a maxout's ``g`` comparisons. LRN counts ``n + 5`` per
  element: one square, ``n`` window adds (one per tap), scale (multiply by ``alpha``, add
  ``k``), power, divide; in-bounds counts only the window taps on real maps.
* :func:`shared_filter_conv` (Type 2.1) counts the 3-D repeated kernel that
  ``impl="lax"`` runs; ``shortcut=True`` counts the sum-the-maps algorithm instead, whose
  ``flops`` are ``2 * macs`` plus ``N*H*W*(C - 1)`` adds.

**Traced channel counts and vmap.** Batch, channel and filter counts may be traced
integers, so one call of ``jax.vmap`` gives a whole cost curve::

    jax.vmap(lambda k: cost.conv((8, 56, 56, k), (3, 3, k, k)).flops)(jnp.arange(1, 1001))

Spatial sizes, kernel sizes, strides, dilations and padding must be static Python ints
(they decide the window, checked by the op's plan in :mod:`jconv.ops.shapes`), and so
must ``C`` where it is a window axis (:func:`depth_sliding_conv`). The cost functions
run that same plan on the real shapes; channel relations (``groups`` divides ``C`` and
``K``, kernel depth ``C/groups``) are validated only where the values are concrete.
All-concrete inputs give exact Python ints. Where a shape entry is traced, every count
is a :class:`Count`: an exact integer held in ``int32`` limbs (an ``int32`` product
overflows past ``2**31``, and ``float32`` is exact only to ``2**24``; a 224×224×64→64
3×3 layer at batch 8 already has 1.5e10 MACs). ``np.asarray(count)`` gives an
``int64`` array, ``count.tolist()`` and ``int(count)`` exact Python ints. What vmap
cannot do: the filter count fixes the shapes of the arrays a real layer computes on, so
*timing* a layer needs one compile per width; only this analytic curve comes from a
single compile.

**Where XLA's count differs from ours.** Measured with :func:`compare` on CPU (jax 0.10.2)
and pinned by ``tests/test_cost.py``; ``T = kh*kw`` taps, "outputs" the output elements:

* Equal to ``flops_in_bounds`` exactly, for every stride, dilation, group count and
  padding tried: ``conv``, ``depthwise_conv``, ``pointwise_conv``, ``separable_conv``,
  ``spatially_separable_conv``, and with ``impl="lax"`` ``per_map_conv`` (maps folded
  into the batch), ``shared_filter_conv`` (the repeated 3-D kernel),
  ``depth_sliding_conv`` (a 3-D conv of the volume) and ``conv_transpose`` (a conv over
  the zero-dilated input: XLA skips the inserted zeros as well as the border, so it counts
  exactly the scatter taps that land on real input pixels inside the cropped output;
  0.959 of dense for 2× upsampling of 16×16 with a 3×3 kernel, ``padding=1``,
  ``output_padding=1``). With a ``padding_mode`` other than zeros: dense, as we count.
  One exception: a conv with a single tap, stride and dilation 1, no zero padding and one
  map in and one out per group (e.g. a 1×1 depthwise conv with multiplier 1) is rewritten
  by XLA into an elementwise multiply and counted as ``macs``, half of ours. And a conv
  whose every tap lands on padding (``flops_in_bounds == 0``) is folded to zeros: XLA
  reports no count, and :func:`xla_cost` returns ``None``.
* ``local_conv`` with ``impl="lax"`` (``lax.conv_general_dilated_local``): XLA =
  dense + ``2*N*A_h*A_w*C*T`` + ``2*T**2``: the input patches are first extracted by a
  grouped convolution with a one-hot kernel (``C*T`` output maps, one tap each, in bounds),
  and the one-hot kernel is built (``T**2`` elements); the per-position contraction then
  multiplies every padded tap. For a VALID window the ratio is about ``1 + T/K``: 2.13
  for 2×10×10×4, 3×3, K=8. With ``impl="patches"``: dense exactly.
* The shifted-window and patch kernels (``impl="shift"``/``"patches"``) multiply the padded
  zeros, so XLA counts dense taps there: ``patches`` = dense; shifted windows =
  dense + ``(T-1)`` adds per output (the per-tap sums) when each group has several maps,
  dense - outputs when each has one map (a broadcast multiply per tap and ``T-1`` adds:
  depthwise, ``per_map_conv``, ``depth_sliding_conv``). ``shared_filter_conv``'s ``sum_maps``
  path (what ``auto`` picks) = ``shortcut=True`` dense FLOPs - outputs: 0.244 of the
  lax-path dense count for C=4 (about ``1/C``). ``conv_transpose``'s ``shift`` path scatters
  every tap before cropping: ``2*macs + (T-1)*N*F_h*F_w*K`` with ``F = (H-1)*s + (k-1)*d + 1``
  the uncropped size (1.47 × dense in the case above).
* Pooling: XLA applies the reducer ``taps - 1`` times per output and ignores padding.
  ``avg_pool`` and ``global_avg_pool``: XLA = dense exactly (the divide is the last op);
  ``max_pool`` and ``channel_max_pool``: XLA = dense - outputs (0.75 for 2×2 windows,
  0.5 for maxout pairs); ``local_response_norm``: XLA = dense - 2 per element (``n - 1``
  window adds; the power is reported under ``"transcendentals"``): 0.8 for ``n = 5``.
* GPU (H200, jax 0.11.2): ``lax`` convolutions are cuDNN library calls that XLA does not
  cost, so :func:`xla_cost` returns ``None`` for them. Programs mixing a library call with
  other ops report only the other ops: ``local_conv`` (lax) gave dense + 161 there, the
  patch-extracting convolution missing. Shift/patch paths and pooling are counted as on
  CPU. Treat a GPU count as a lower bound.

>>> import jax, jax.numpy as jnp, numpy as np
>>> from jconv import cost
>>> c = cost.conv((8, 56, 56, 64), (3, 3, 64, 64))   # SAME: 1-pixel zero border
>>> c.flops, 2 * 8 * 56 * 56 * 3 * 3 * 64 * 64         # dense: every tap
(1849688064, 1849688064)
>>> a = 56 * 3 - 2                  # per axis: the first and last rows lose one tap each
>>> c.flops_in_bounds, 2 * 8 * a * a * 64 * 64        # what XLA's CPU count reports
(1805910016, 1805910016)
>>> c.params, c.output_shape
(36928, (8, 56, 56, 64))
>>> curve = jax.vmap(lambda k: cost.conv((8, 56, 56, k), (3, 3, k, k)).flops)
>>> curve(jnp.array([8, 16, 32])).tolist()           # quadratic in the width
[28901376, 115605504, 462422016]
>>> macs = jax.vmap(lambda k: cost.conv((8, 224, 224, 64), (3, 3, 64, k)).macs)
>>> np.asarray(macs(jnp.array([64, 128])))            # exact past 2**24 and 2**31
array([14797504512, 29595009024])
"""


from jconv.cost.convs import (conv, conv_transpose, depth_sliding_conv, depthwise_conv,
                              local_conv, per_map_conv, pointwise_conv, separable_conv,
                              shared_filter_conv, spatially_separable_conv)
from jconv.cost.counting import Count
from jconv.cost.model import Cost, in_bounds_taps
from jconv.cost.pooling import (avg_pool, channel_max_pool, global_avg_pool,
                                local_response_norm, max_pool)
from jconv.cost.xla import compare, loglog_slope, xla_cost

__all__ = [
    "Cost", "Count", "avg_pool", "channel_max_pool", "compare", "conv", "conv_transpose",
    "depth_sliding_conv", "depthwise_conv", "global_avg_pool", "in_bounds_taps",
    "local_conv", "local_response_norm", "loglog_slope", "max_pool", "per_map_conv",
    "pointwise_conv", "separable_conv", "shared_filter_conv", "spatially_separable_conv",
    "xla_cost",
]
