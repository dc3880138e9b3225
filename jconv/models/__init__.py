"""AlexNet, GoogLeNet and MobileNet v1 as the papers' tables, with any conv variant and width.

>>> from flax import nnx
>>> import jax.numpy as jnp
>>> from jconv import models
>>> models.list_models()
['alexnet', 'alexnet_single_tower', 'googlenet', 'mobilenet_v1']
>>> m = models.build("mobilenet_v1", width=0.25, input_size=32, num_classes=10,
...                  rngs=nnx.Rngs(0))
>>> m(jnp.ones((2, 32, 32, 3))).shape
(2, 10)
>>> [(i.name, i.out_shape) for i in m.layer_table()[:2]]
[('conv1', (1, 16, 16, 8)), ('conv1_bn', (1, 16, 16, 8))]

Every model takes the conv variant of its conv layers (a key of
:data:`jconv.nn.VARIANTS`; how a variant replaces a layer is said in
:mod:`jconv.nn.variants`), a width multiplier (every filter count ``K`` but the
classifier's becomes ``round(K * width)``, rounded up to a multiple of the groups that
split it; a count that rounds to 0 is refused), the input size and channels, and the
number of classes. Defaults are the papers'.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

from flax import nnx

from jconv.models import alexnet as _alexnet
from jconv.models import googlenet as _googlenet
from jconv.models import mobilenet as _mobilenet
from jconv.models._table import NORMS, LayerInfo, TableModel, batch_norm_rows, spatial


def _alexnet_2012(**kw):
    return _table("alexnet", _alexnet.LAYERS_2012, _alexnet.INPUT_SIZE["alexnet"], **kw)


def _alexnet_single_tower(**kw):
    return _table("alexnet_single_tower", _alexnet.LAYERS_SINGLE_TOWER,
                  _alexnet.INPUT_SIZE["alexnet_single_tower"], **kw)


def _googlenet_v1(*, aux_classifiers: bool = False, **kw):
    aux = {tap: _googlenet.AUX_HEAD for tap in _googlenet.AUX_TAPS} if aux_classifiers else None
    return _table("googlenet", _googlenet.LAYERS, _googlenet.INPUT_SIZE, aux=aux, **kw)


def _mobilenet_v1(*, variant="standard", **kw):
    return _table("mobilenet_v1", _mobilenet.layers(variant), _mobilenet.INPUT_SIZE,
                  variant=variant, **kw)


def _table(name, rows, default_size, *, variant="standard", width=1.0, input_size=None,
           in_channels=3, num_classes=1000, impl="auto", norm="paper", aux=None, rngs):
    if norm not in NORMS:
        raise ValueError(f"{name}: norm={norm!r}; expected one of {list(NORMS)}")
    if norm == "batch":
        rows = batch_norm_rows(rows)
        aux = None if aux is None else {tap: batch_norm_rows(r) for tap, r in aux.items()}
    return TableModel(name, rows, input_size=spatial(name, input_size, default_size),
                      in_channels=in_channels, variant=variant, width=width,
                      num_classes=num_classes, impl=impl, rngs=rngs, aux=aux)


MODELS: dict[str, Callable[..., TableModel]] = {
    "alexnet": _alexnet_2012,
    "alexnet_single_tower": _alexnet_single_tower,
    "googlenet": _googlenet_v1,
    "mobilenet_v1": _mobilenet_v1,
}


def list_models() -> list[str]:
    """The names :func:`build` accepts, sorted."""
    return sorted(MODELS)


def build(name: str, *, variant: str = "standard", width: float = 1.0, input_size=None,
          in_channels: int = 3, num_classes: int = 1000, rngs: nnx.Rngs,
          **options) -> TableModel:
    """Builds model ``name``.

    Args:
      name: one of :func:`list_models`.
      variant: conv variant of every conv layer but the stem (see :mod:`jconv.nn.variants`).
      width: width multiplier.
      input_size: ``H`` (square) or ``(H, W)``; default the paper's.
      in_channels: ``C`` of the input, an int ≥ 1.
      num_classes: classifier outputs, an int ≥ 1.
      rngs: ``nnx.Rngs`` for parameters and dropout.
      **options: model options: ``impl`` (every op's implementation, default ``"auto"``);
        ``norm`` (``"paper"``: the table's own normalisation, LRN where the paper has it;
        ``"batch"``: a BatchNorm after every conv, before its ReLU, and no LRN);
        ``aux_classifiers`` (GoogLeNet only).

    Returns:
      A :class:`TableModel`: ``model(x)`` on ``(N, H, W, C)`` inputs, ``model.layer_table()``.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    for arg, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"build: {arg}={value!r}; expected an int ≥ 1")
    return MODELS[name](variant=variant, width=width, input_size=input_size,
                        in_channels=in_channels, num_classes=num_classes, rngs=rngs, **options)


__all__ = ["LayerInfo", "MODELS", "TableModel", "build", "list_models"]
