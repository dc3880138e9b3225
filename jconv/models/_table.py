"""The one generic builder behind every model: a paper's table of rows -> an ``nnx.Module``.

A row is ``(name, kind, kwargs)``:

* ``conv``: a Type 2.2 layer of the paper (:class:`jconv.nn.ConvSpec` fields:
  ``features, kernel, stride, padding, groups, use_bias``), replaced per the conv variant
  by :func:`jconv.nn.make_conv` (the first conv of the model, the stem, never is);
* ``depthwise`` (``kernel, stride``), ``pointwise`` (``features, stride``): MobileNet's
  own layers, not replaced;
* ``max_pool``, ``avg_pool`` (``window, stride, padding``), ``global_avg_pool``,
  ``adaptive_avg_pool`` (``size``), ``lrn``, ``batch_norm``, ``flatten``,
  ``dropout`` (``rate``), ``linear`` (``features``; ``None`` means the classes);
* ``concat`` (``branches``: tuples of rows run on the same input, concatenated on maps).

Any row may carry ``relu=True``. Widths are scaled by the width multiplier before
building (:func:`scale_rows`); shapes are propagated through the table with
:func:`jconv.output_shape` while building, so a layer that does not fit its input is
reported by name at build time, and :meth:`TableModel.layer_table` lists each layer's
shapes for a batch of 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jconv.nn import layers as L
from jconv.nn import pooling as P
from jconv.nn.linear import Linear
from jconv.nn.norm import BatchNorm
from jconv.nn.variants import ConvSpec, check_variant, make_conv


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One layer of a built model, for a batch of 1.

    Attributes:
      name: path of the layer, e.g. ``"inception_3a/branch_3x3_reduce"``.
      op: the jconv op it runs (``"conv"``, ``"pointwise_conv"``, ...) or one of
        ``"linear"``, ``"batch_norm"``, ``"dropout"``, ``"flatten"``, ``"concat"``,
        ``"adaptive_avg_pool"``.
      kernel_shapes: shapes of its kernels (biases and BatchNorm scales excluded).
      groups: feature groups (``C`` for a depthwise conv, 1 where meaningless).
      in_shape, out_shape: ``(1, H, W, C)`` or ``(1, C)``.
      weight_shapes: parameter name -> shape, biases included.
      kwargs: the op's keyword arguments (stride, padding, ...), for the cost model.
      args: the op's positional arguments after ``x`` (weight shapes, a pool's window),
        so ``jconv.cost.<op>(in_shape, *args, **kwargs)`` costs a jconv op.
    """

    name: str
    op: str
    kernel_shapes: tuple[tuple[int, ...], ...]
    groups: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight_shapes: dict[str, tuple[int, ...]]
    kwargs: dict[str, Any]
    args: tuple = ()

    @property
    def params(self) -> int:
        return sum(math.prod(s) for s in self.weight_shapes.values())


class Flatten(nnx.Module):
    """``(N, H, W, C)`` -> ``(N, H*W*C)``, row-major (H, then W, then C)."""

    def __call__(self, x):
        return x.reshape(x.shape[0], -1)  # (N, H*W*C)


_NON_KERNELS = ("bias", "scale")


def describe(name: str, module: nnx.Module, x_shape: tuple[int, ...]) -> LayerInfo:
    """The :class:`LayerInfo` of ``module`` on an input of ``x_shape``."""
    x_shape = tuple(x_shape)
    if isinstance(module, L._Layer):
        op = module.op
        out = module.output_shape(x_shape)
        weights = module.weight_shapes()
        args, kwargs = module.op_args()
        groups = x_shape[-1] if op == "depthwise_conv" else kwargs.get("groups", 1)
    elif isinstance(module, (Linear, nnx.Linear)):
        if len(x_shape) != 2 or x_shape[-1] != module.in_features:
            raise ValueError(f"linear layer expects (N, {module.in_features}), got {x_shape}")
        op, out, groups, kwargs = "linear", (x_shape[0], module.out_features), 1, {}
        weights = {"kernel": (module.in_features, module.out_features)}
        if module.bias is not None:
            weights["bias"] = (module.out_features,)
    elif isinstance(module, (BatchNorm, nnx.BatchNorm)):
        op, out, groups, kwargs = "batch_norm", x_shape, 1, {}
        weights = {"scale": (module.num_features,), "bias": (module.num_features,)}
    elif isinstance(module, nnx.Dropout):
        op, out, groups, kwargs, weights = "dropout", x_shape, 1, {"rate": module.rate}, {}
    elif isinstance(module, Flatten):
        op, out, groups, kwargs, weights = "flatten", (x_shape[0], math.prod(x_shape[1:])), 1, {}, {}
    else:
        raise TypeError(f"no description for {type(module).__name__}")
    kernels = tuple(s for k, s in weights.items() if k not in _NON_KERNELS)
    return LayerInfo(name, op, kernels, groups, x_shape, tuple(out), weights, kwargs,
                     args if isinstance(module, L._Layer) else ())


@dataclasses.dataclass
class Context:
    """What every row of one model is built with."""

    model: str
    variant: str
    num_classes: int
    impl: str
    rngs: nnx.Rngs
    stem_pending: bool = True


def _make(ctx: Context, path: str, kind: str, kw: dict, x_shape) -> nnx.Module:
    c = x_shape[-1]
    rngs, impl = ctx.rngs, ctx.impl
    if kind == "conv":
        spec = ConvSpec(**{k: v for k, v in kw.items() if k != "relu"})
        layer, _ = make_conv(ctx.variant, spec, c, stem=ctx.stem_pending, impl=impl, rngs=rngs)
        ctx.stem_pending = False
        return layer
    if kind == "depthwise":
        return L.DepthwiseConv(c, kw.get("kernel", 3), stride=kw.get("stride", 1),
                               padding=kw.get("padding", "SAME"),
                               use_bias=kw.get("use_bias", True), impl=impl, rngs=rngs)
    if kind == "pointwise":
        return L.PointwiseConv(c, kw["features"], stride=kw.get("stride", 1),
                               use_bias=kw.get("use_bias", True), impl=impl, rngs=rngs)
    if kind in ("max_pool", "avg_pool"):
        cls = P.MaxPool if kind == "max_pool" else P.AvgPool
        return cls(kw["window"], kw.get("stride"), kw.get("padding", "VALID"), impl=impl)
    if kind == "global_avg_pool":
        return P.GlobalAvgPool(impl=impl)
    if kind == "adaptive_avg_pool":
        return P.AdaptiveAvgPool(kw["size"])
    if kind == "lrn":
        return P.LocalResponseNorm(impl=impl)
    if kind == "batch_norm":  # its ReLU fused in (build_rows leaves the step's off)
        return BatchNorm(c, relu=kw.get("relu", False), rngs=rngs,
                         impl=impl if impl in BatchNorm.FORMS else "auto")
    if kind == "flatten":
        return Flatten()
    if kind == "dropout":
        return nnx.Dropout(kw["rate"], rngs=rngs)
    if kind == "linear":
        if len(x_shape) != 2:
            raise ValueError(f"a linear layer needs (N, features) input, got {x_shape}")
        features = ctx.num_classes if kw.get("features") is None else kw["features"]
        return Linear(c, features, use_bias=kw.get("use_bias", True), kernel_init=L.he_normal(c),
                      impl=impl if impl in ("lax", "onednn") else "auto", rngs=rngs)
    raise ValueError(f"{ctx.model}: unknown row kind {kind!r} for layer {path}")


def build_rows(owner: nnx.Module, rows, ctx: Context, x_shape, prefix: str = ""):
    """Builds ``rows`` as attributes of ``owner``; returns the steps and the output shape.

    Steps are ``(name, relu, branches)``: ``branches`` is ``None`` for a plain layer and a
    tuple of step tuples for a ``concat`` row (its layers live on a child module).
    """
    steps = []
    for name, kind, kw in rows:
        path = prefix + name
        if kind == "concat":
            module = Concat(kw["branches"], ctx, x_shape, prefix=path + "/")
            out = module.out_shape
        else:
            try:
                module = _make(ctx, path, kind, kw, x_shape)
                out = describe(path, module, x_shape).out_shape
            except ValueError as e:
                raise ValueError(f"{ctx.model}: layer {path} does not fit its input "
                                 f"(N, H, W, C) = {tuple(x_shape)}: {e}") from e
        setattr(owner, name, module)
        steps.append((name, kind != "batch_norm" and bool(kw.get("relu", False))))
        x_shape = out
    return tuple(steps), tuple(x_shape)


def run_steps(owner, steps, x, taps=(), found=None):
    for name, relu in steps:
        module = getattr(owner, name)
        with jax.named_scope(type(module).__name__):
            x = module(x)
        if relu:
            x = jax.nn.relu(x)
        if found is not None and name in taps:
            found[name] = x
    return x


def table_rows(owner, steps, x_shape, prefix=""):
    """``LayerInfo`` of every layer under ``owner``, in order; and the output shape."""
    infos = []
    for name, _ in steps:
        module = getattr(owner, name)
        if isinstance(module, (Concat, Stack)):
            sub, out = module.table(x_shape, prefix + name + "/")
            infos += sub
            infos.append(LayerInfo(prefix + name, "concat", (), 1, tuple(x_shape), out, {}, {}))
        else:
            info = describe(prefix + name, module, x_shape)
            infos.append(info)
            out = info.out_shape
        x_shape = out
    return infos, tuple(x_shape)


class Concat(nnx.Module):
    """Branches on the same input, concatenated along the maps (an Inception module)."""

    def __init__(self, branches, ctx: Context, x_shape, *, prefix: str):
        self.branches = tuple(build_rows(self, rows, ctx, x_shape, prefix)[0]
                              for rows in branches)
        outs = [table_rows(self, steps, x_shape)[1] for steps in self.branches]
        if len({o[:-1] for o in outs}) != 1:
            raise ValueError(f"{ctx.model}: branches of {prefix[:-1]} give different grids "
                             f"{[o[1:-1] for o in outs]} for input {tuple(x_shape)}")
        self.out_shape = (*outs[0][:-1], sum(o[-1] for o in outs))

    def table(self, x_shape, prefix):
        infos = []
        for steps in self.branches:
            infos += table_rows(self, steps, x_shape, prefix)[0]
        return infos, (x_shape[0], *self.out_shape[1:])

    def __call__(self, x):
        return jnp.concatenate([run_steps(self, steps, x) for steps in self.branches], axis=-1)


class Stack(nnx.Module):
    """Rows run in order on a child module (an auxiliary head: paths ``aux1/conv``, ...)."""

    def __init__(self, rows, ctx: Context, x_shape, *, prefix: str):
        self.steps, self.out_shape = build_rows(self, rows, ctx, x_shape, prefix)

    def table(self, x_shape, prefix):
        return table_rows(self, self.steps, x_shape, prefix)

    def __call__(self, x):
        return run_steps(self, self.steps, x)


def _next_groups(rows, i) -> int:
    """Groups of the conv that receives row ``i``'s maps (1 if a layer mixes them first)."""
    for _, kind, kw in rows[i + 1:]:
        if kind == "conv":
            return kw.get("groups", 1)
        if kind not in ("lrn", "max_pool", "avg_pool", "batch_norm", "dropout"):
            return 1
    return 1


def scale_rows(model: str, rows, width: float, prefix: str = ""):
    """Rows with every filter count ``K`` scaled to ``round(K * width)``.

    The classifier (``features=None``) is not scaled. A count that rounds to 0 is refused
    with ``ValueError``. A count is rounded up to a multiple of its own groups and of the
    groups of the conv that receives it, so every grouped conv still divides its maps.
    """
    scaled = []
    for i, (name, kind, kw) in enumerate(rows):
        kw = dict(kw)
        if kind == "concat":
            kw["branches"] = tuple(scale_rows(model, b, width, f"{prefix}{name}/")
                                   for b in kw["branches"])
        elif kw.get("features") is not None:
            k = round(kw["features"] * width)
            if k < 1:
                raise ValueError(
                    f"{model}: width {width} rounds layer {prefix}{name} from "
                    f"{kw['features']} filters to 0; use width >= {0.5 / kw['features']:.3g}")
            multiple = math.lcm(kw.get("groups", 1), _next_groups(rows, i))
            kw["features"] = -(-k // multiple) * multiple
        scaled.append((name, kind, kw))
    return tuple(scaled)


NORMS = ("paper", "batch")


def batch_norm_rows(rows):
    """``rows`` with a BatchNorm after every conv (before its ReLU) and without LRN.

    A conv already followed by a ``batch_norm`` row (MobileNet's) is kept as it is; concat
    branches are rewritten the same way. The BatchNorm of conv ``name`` is ``name_bn``.
    """
    out = []
    for i, (name, kind, kw) in enumerate(rows):
        if kind == "lrn":
            continue
        if kind == "concat":
            kw = dict(kw, branches=tuple(batch_norm_rows(b) for b in kw["branches"]))
        elif kind == "conv" and not (i + 1 < len(rows) and rows[i + 1][1] == "batch_norm"):
            relu = bool(kw.get("relu", False))
            out.append((name, kind, {k: v for k, v in kw.items() if k != "relu"}))
            out.append((f"{name}_bn", "batch_norm", {"relu": relu}))
            continue
        out.append((name, kind, kw))
    return tuple(out)


def spatial(model: str, size, default) -> tuple[int, int]:
    size = default if size is None else size
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, int) and s > 0 for s in hw):
        raise ValueError(f"{model}: input_size={size!r}; expected a positive int or (H, W)")
    return hw


class TableModel(nnx.Module):
    """A model built from a paper's table of rows (see the module docstring).

    ``model.train()`` / ``model.eval()`` switch dropout, BatchNorm and auxiliary heads.
    With auxiliary heads (``aux``: tap name -> head rows) the model returns
    ``(logits, *aux_logits)`` in training and ``logits`` in evaluation.
    """

    def __init__(self, name: str, rows, *, input_size, in_channels: int, variant: str,
                 width: float, num_classes: int, impl: str, rngs: nnx.Rngs, aux=None):
        check_variant(variant)
        if not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"{name}: width={width!r}; expected a positive number")
        if not (isinstance(in_channels, int) and in_channels > 0):
            raise ValueError(f"{name}: in_channels={in_channels!r}; expected a positive int")
        self.name = name
        self.input_shape = (*input_size, in_channels)
        self.variant, self.width, self.num_classes = variant, width, num_classes
        self.deterministic = False
        ctx = Context(name, variant, num_classes, impl, rngs)
        self.steps, self.out_shape = build_rows(self, scale_rows(name, rows, width), ctx,
                                                (1, *self.input_shape))
        self.taps = tuple(aux or ())
        tap_shapes = dict(self._tap_shapes())
        for i, (tap, rows) in enumerate((aux or {}).items(), 1):
            setattr(self, f"aux{i}", Stack(scale_rows(name, rows, width, f"aux{i}/"), ctx,
                                           tap_shapes[tap], prefix=f"aux{i}/"))
        self.heads = tuple(f"aux{i}" for i in range(1, len(self.taps) + 1))

    def _tap_shapes(self):
        shape = (1, *self.input_shape)
        for name, relu in self.steps:
            _, shape = table_rows(self, ((name, relu),), shape)
            yield name, shape

    def check_input(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            h, w, c = self.input_shape
            raise ValueError(f"{self.name}: input x.shape={tuple(x.shape)}; expected "
                             f"(N, H, W, C) = (N, {h}, {w}, {c})")

    def __call__(self, x):
        self.check_input(x)
        found = {}
        y = run_steps(self, self.steps, x, self.taps, found)
        if not self.heads or self.deterministic:
            return y
        return (y, *(getattr(self, head)(found[tap]) for tap, head in zip(self.taps, self.heads)))

    def layer_table(self) -> list[LayerInfo]:
        """Every layer in order (auxiliary heads last), for a batch of 1."""
        infos, _ = table_rows(self, self.steps, (1, *self.input_shape))
        tap_shapes = dict(self._tap_shapes())
        for tap, head in zip(self.taps, self.heads):
            infos += getattr(self, head).table(tap_shapes[tap], head + "/")[0]
        return infos
