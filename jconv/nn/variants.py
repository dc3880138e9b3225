"""How a conv variant replaces a Type 2.2 layer of a paper's table: the one place that says so.

A table row describes a Type 2.2 conv layer (:class:`ConvSpec`: ``K`` filters of
``kh×kw``, stride, padding, groups) that receives ``C`` maps. :func:`make_conv` builds
the layer a variant puts there and returns it with its actual output width, which the
next layer receives:

=================  =================================================================  ============
variant            layer                                                              output maps
=================  =================================================================  ============
``standard``       the paper's own Type 2.2 layer, with its groups (:class:`Conv`)     ``K``
``grouped``        Type 2.2 with ``groups=2`` where ``C`` and ``K`` are both even,     ``K``
                   else 1
``per_map``        Type 1 (:class:`PerMapConv`): ``m = max(1, K // C)`` 2-D filters    ``C*m``
                   each applied to all ``C`` maps, so the width is the count closest
                   to ``K`` that the type allows (never more than ``K`` unless ``K < C``,
                   where it is ``C``)
``shared_filter``  Type 2.1 (:class:`SharedFilterConv`): ``K`` 2-D filters, each       ``K``
                   applied to all maps and summed
``separable``      depthwise (multiplier 1) then 1×1 to ``K`` (:class:`SeparableConv`,  ``K``
                   as MobileNet, without a nonlinearity in between)
=================  =================================================================  ============

A variant registered in :mod:`jconv.ops.registry` (an ``OpSpec`` with ``layer`` and
``variant``) is a layer of that op (:class:`~jconv.nn.op_layer.OpLayer`), of the width
its ``LayerForm`` says; :func:`variants` lists the built-in and the registered ones.

Exceptions, the same for every model:

* the stem (the model's first conv, which sees the image) is always ``standard``;
* a 1×1 layer is always the paper's pointwise Type 2.2 layer (:class:`PointwiseConv`):
  Type 1 and 2.1 of a 1×1 kernel only scale maps, a separable 1×1 is a 1×1 again;
* MobileNet's table rows are its depthwise-separable blocks, each the factorisation of a
  3×3 Type 2.2 conv ``C -> K``. ``standard`` and ``separable`` keep the paper's block
  (depthwise, BatchNorm, ReLU, pointwise, BatchNorm, ReLU); any other variant replaces the
  3×3 conv the block factorises by its layer above, followed by BatchNorm and ReLU.

>>> from flax import nnx
>>> from jconv.nn.variants import ConvSpec, make_conv
>>> spec = ConvSpec(features=256, kernel=5, padding=2, groups=2)   # AlexNet conv2
>>> [make_conv(v, spec, 96, rngs=nnx.Rngs(0))[1] for v in VARIANTS]
[256, 256, 192, 256, 256]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from flax import nnx

from jconv.nn.layers import Conv, PerMapConv, PointwiseConv, SeparableConv, SharedFilterConv
from jconv.nn.op_layer import OpLayer
from jconv.ops import registry


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """A Type 2.2 conv layer of a paper's table: ``features`` (``K``) filters of ``kernel``."""

    features: int
    kernel: Any = 3
    stride: Any = 1
    padding: Any = "SAME"
    groups: int = 1
    use_bias: bool = True

    @property
    def is_pointwise(self) -> bool:
        kernel = (self.kernel,) if isinstance(self.kernel, int) else tuple(self.kernel)
        return all(k == 1 for k in kernel) and self.padding in ("SAME", "VALID", 0)


Builder = Callable[..., tuple[nnx.Module, int]]


def _standard(spec, c, **kw):
    return _conv(spec, c, spec.groups, **kw)


def _grouped(spec, c, **kw):
    return _conv(spec, c, 2 if c % 2 == 0 and spec.features % 2 == 0 else 1, **kw)


def _conv(spec, c, groups, *, impl, rngs):
    layer = Conv(c, spec.features, spec.kernel, stride=spec.stride, padding=spec.padding,
                 groups=groups, use_bias=spec.use_bias, impl=impl, rngs=rngs)
    return layer, spec.features


def _per_map(spec, c, *, impl, rngs):
    filters = max(1, spec.features // c)
    layer = PerMapConv(c, filters, spec.kernel, stride=spec.stride, padding=spec.padding,
                       use_bias=spec.use_bias, impl=impl, rngs=rngs)
    return layer, c * filters


def _shared_filter(spec, c, *, impl, rngs):
    layer = SharedFilterConv(c, spec.features, spec.kernel, stride=spec.stride,
                             padding=spec.padding, use_bias=spec.use_bias, impl=impl,
                             rngs=rngs)
    return layer, spec.features


def _separable(spec, c, *, impl, rngs):
    layer = SeparableConv(c, spec.features, spec.kernel, stride=spec.stride,
                          padding=spec.padding, use_bias=spec.use_bias, impl=impl, rngs=rngs)
    return layer, spec.features


VARIANTS: dict[str, Builder] = {
    "standard": _standard,
    "grouped": _grouped,
    "per_map": _per_map,
    "shared_filter": _shared_filter,
    "separable": _separable,
}


def _registered(spec: registry.OpSpec) -> Builder:
    def build(conv_spec, c, *, impl, rngs):
        layer = OpLayer(spec.name, c, conv_spec.features, conv_spec.kernel,
                        stride=conv_spec.stride, padding=conv_spec.padding,
                        use_bias=conv_spec.use_bias, impl=impl, rngs=rngs)
        return layer, spec.layer.out_features(c, conv_spec.features)
    return build


def variants() -> dict[str, Builder]:
    """The built-in variants, then every variant registered in :mod:`jconv.ops.registry`."""
    registered = {name: _registered(spec) for name, spec in registry.variants().items()}
    return {**VARIANTS, **registered}


def check_variant(variant: str) -> str:
    """Returns ``variant`` if known, else raises ``ValueError`` listing the known ones."""
    known = variants()
    if variant not in known:
        raise ValueError(f"unknown conv variant {variant!r}; known: {', '.join(known)}")
    return variant


def make_conv(variant: str, spec: ConvSpec, in_features: int, *, stem: bool = False,
              impl: str = "auto", rngs: nnx.Rngs) -> tuple[nnx.Module, int]:
    """The layer ``variant`` puts in place of ``spec`` on ``in_features`` maps, and its width.

    Args:
      variant: a key of :func:`variants`.
      spec: the paper's Type 2.2 layer.
      in_features: ``C``, the maps the layer receives.
      stem: True for the model's first conv, which stays ``standard``.
      impl: passed to the layer's op.
      rngs: for the parameters.

    Returns:
      ``(layer, out_features)``.
    """
    check_variant(variant)
    if spec.is_pointwise:
        layer = PointwiseConv(in_features, spec.features, stride=spec.stride,
                              groups=spec.groups, use_bias=spec.use_bias, impl=impl, rngs=rngs)
        return layer, spec.features
    return variants()["standard" if stem else variant](spec, in_features, impl=impl, rngs=rngs)
