"""PyTorch's form of a jconv model, for the whole-model rows: the same layers, groups,
padding, LRN, BatchNorm and classifier, read from the built :class:`TableModel` row by row,
so the parameter counts match (:func:`torch_model` checks it).

PyTorch runs NCHW tensors in channels-last memory (its fast CPU layout); a layer whose
padding PyTorch cannot express symmetrically (TensorFlow's SAME at stride 2) pads first
with ``F.pad``, as :mod:`jconv.torch_ports` does for single ops. The flattening before a
classifier follows PyTorch's NCHW order, which changes no cost. A model of another conv
variant (Type 1, Type 2.1, ...) has no PyTorch form here: :func:`torch_model` raises
``TypeError`` naming the layer.
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from jconv.models._table import Concat, Flatten, Stack, describe
from jconv.nn import layers as L
from jconv.nn import pooling as P
from jconv.nn.linear import Linear
from jconv.nn.norm import BatchNorm
from jconv.ops import registry
from jconv.torch_ports import _conv_pads

_CONVS = ("conv", "depthwise_conv", "pointwise_conv")


def _padded(torch, layer, plan):
    """``layer`` after ``F.pad`` of the plan's asymmetric rest, if it has one."""
    _, extra = _conv_pads(plan)
    if not any(extra):
        return layer
    return torch.nn.Sequential(torch.nn.ZeroPad2d(tuple(extra)), layer)


def _layer(torch, module, x_shape):
    """The PyTorch module of one jconv layer on an ``x_shape`` (NHWC) input."""
    nn = torch.nn
    if isinstance(module, (L.Conv, L.DepthwiseConv, L.PointwiseConv)):
        args, kwargs = module.op_args()
        plan = registry.get(module.op).plan(x_shape, *args, **kwargs)
        c, k = x_shape[-1], module.output_shape(x_shape)[-1]
        groups = c if module.op == "depthwise_conv" else kwargs.get("groups", 1)
        sym, _ = _conv_pads(plan)
        conv = nn.Conv2d(c, k, plan.window.kernel, plan.window.stride, sym,
                         dilation=plan.window.dilation, groups=groups, bias=module.use_bias)
        return _padded(torch, conv, plan)
    if isinstance(module, (P.MaxPool, P.AvgPool)):
        args, kwargs = module.op_args()
        plan = registry.get(module.op).plan(x_shape, *args, **kwargs)
        sym, _ = _conv_pads(plan)
        if isinstance(module, P.MaxPool):
            pool = nn.MaxPool2d(plan.window.kernel, plan.window.stride, sym)
        else:
            pool = nn.AvgPool2d(plan.window.kernel, plan.window.stride, sym,
                                count_include_pad=module.count_include_pad)
        return _padded(torch, pool, plan)
    if isinstance(module, P.GlobalAvgPool):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if isinstance(module, P.AdaptiveAvgPool):
        return nn.AdaptiveAvgPool2d(module.output_size)
    if isinstance(module, P.LocalResponseNorm):  # PyTorch's alpha multiplies the mean
        return nn.LocalResponseNorm(module.size, module.alpha * module.size, module.beta,
                                    module.k)
    if isinstance(module, (BatchNorm, nnx.BatchNorm)):
        bn = nn.BatchNorm2d(module.num_features, eps=module.epsilon, momentum=1 - module.momentum)
        return nn.Sequential(bn, nn.ReLU(inplace=True)) if getattr(module, "relu", False) else bn
    if isinstance(module, nnx.Dropout):
        return nn.Dropout(module.rate)
    if isinstance(module, Flatten):
        return nn.Flatten()
    if isinstance(module, (Linear, nnx.Linear)):
        return nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    raise TypeError(f"no PyTorch form of layer {type(module).__name__}")


def _out_shape(module, x_shape):
    if isinstance(module, (Concat, Stack)):
        return module.table(x_shape, "")[1]
    return describe("", module, x_shape).out_shape


def _steps(torch, owner, steps, x_shape):
    """``(nn.Sequential, out_shape)`` of ``owner``'s rows, each ReLU where the row says."""
    nn = torch.nn
    out = []
    for name, relu in steps:
        module = getattr(owner, name)
        if isinstance(module, Concat):
            out.append(_concat(torch, [_steps(torch, module, s, x_shape)[0]
                                       for s in module.branches]))
        elif isinstance(module, Stack):
            out.append(_steps(torch, module, module.steps, x_shape)[0])
        else:
            try:
                out.append(_layer(torch, module, x_shape))
            except TypeError as error:
                raise TypeError(f"{owner.__class__.__name__}.{name}: {error}") from None
        x_shape = _out_shape(module, x_shape)
        if relu:
            out.append(nn.ReLU(inplace=True))
    return nn.Sequential(*out), tuple(x_shape)


def _concat(torch, branches):
    """Branches on one input, concatenated along the maps (a class of the caller's torch)."""
    class TorchConcat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.branches = torch.nn.ModuleList(branches)

        def forward(self, x):
            return torch.cat([b(x) for b in self.branches], 1)
    return TorchConcat()


def torch_model(model, torch):
    """A ``torch.nn.Module`` (channels-last, training mode) computing what ``model`` does:
    its output in evaluation, ``(logits, *aux_logits)`` in training when it has auxiliary
    heads. Raises ``ValueError`` if the parameter counts differ."""
    nn = torch.nn
    trunk = []
    x_shape, taps = (1, *model.input_shape), {}
    for name, relu in model.steps:  # the trunk, cut at each auxiliary head's tap
        seq, x_shape = _steps(torch, model, ((name, relu),), x_shape)
        trunk.append(seq)
        if name in model.taps:
            taps[len(trunk)] = x_shape
    heads = [_steps(torch, getattr(model, h), getattr(model, h).steps, shape)[0]
             for h, shape in zip(model.heads, taps.values())]
    cuts = list(taps)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.ModuleList(trunk)
            self.heads = nn.ModuleList(heads)

        def forward(self, x):
            found = []
            for i, layer in enumerate(self.trunk, 1):
                x = layer(x)
                if i in cuts:
                    found.append(x)
            if not self.training or not len(self.heads):
                return x
            return (x, *(h(t) for h, t in zip(self.heads, found)))

    port = Model().to(memory_format=torch.channels_last)
    ours = sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    theirs = sum(p.numel() for p in port.parameters())
    if ours != theirs:
        raise ValueError(f"{model.name}: the PyTorch form has {theirs:,} parameters, jconv's "
                         f"{ours:,}")
    return port

