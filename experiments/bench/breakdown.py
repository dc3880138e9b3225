"""Where a training step's time goes: the step's XLA ops, timed by a ``jax.profiler`` trace
and sorted into :data:`CATEGORIES` by the names they carry.

Every op of a compiled XLA program carries ``metadata={op_name=...}``: the path of named
scopes and primitives it came from. The models name each layer's scope by its class
(:func:`jconv.models._table.run_steps`), the conv ops add ``conv[impl]``, the training
step names ``loss`` and ``optimizer``, and reverse-mode ops sit inside ``transpose(...)``.
The trace (Perfetto's JSON, written by ``jax.profiler.trace(create_perfetto_trace=True)``)
gives one complete event per op execution, named as in the compiled HLO text; joining the
two gives milliseconds per category and per step.

>>> category("jit(train_step)/transpose(jvp(Conv))/conv[onednn]/jit(run_conv)/ffi_call",
...          "ffi_call.3")
'conv backward'
>>> category("jit(train_step)/jvp(BatchNorm)/sub", "broadcast_subtract_fusion")
'normalisation'
>>> category("", "copy.7")
'copies and transposes'

PyTorch's step (:func:`torch_breakdown`) is sorted the same way from ``torch.profiler``'s
events: each op's own time, by its name and the names of the ops and autograd nodes it runs
inside (:func:`torch_category`), so an add inside the optimizer's step is the optimizer's.

>>> torch_category(["aten::mm", "AddmmBackward0",
...                 "autograd::engine::evaluate_function: AddmmBackward0"])
'linear'
>>> torch_category(["aten::add_", "aten::_foreach_add_", "Optimizer.step#SGD.step"])
'optimizer update'
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax

CATEGORIES = ("conv forward", "conv backward", "normalisation", "pooling", "elementwise",
              "linear", "loss", "optimizer update", "copies and transposes", "NaN masks",
              "other")
"""The categories of :func:`category`, in the order tables show them."""

_SCOPES = (  # innermost first wins: (scope marker, category)
    ("_where", "NaN masks"), ("lax_nans", "NaN masks"),
    ("BatchNorm", "normalisation"), ("LocalResponseNorm", "normalisation"),
    ("MaxPool", "pooling"), ("AvgPool", "pooling"), ("GlobalAvgPool", "pooling"),
    ("AdaptiveAvgPool", "pooling"),
    ("relu", "elementwise"), ("Dropout", "elementwise"),
    ("Linear", "linear"), ("loss", "loss"), ("optimizer", "optimizer update"),
)
_OP = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{op_name=\"([^\"]*)\"")


def category(op_name: str, hlo_name: str) -> str:
    """The category of an XLA op named ``hlo_name`` whose metadata says ``op_name``."""
    tokens = re.split(r"[/()]", op_name)
    if any(t.startswith(("conv[", "depthwise_conv[", "pointwise_conv[")) or "_conv[" in t
           for t in tokens):
        if "_where" in tokens:
            return "NaN masks"
        if hlo_name.startswith(("copy", "transpose")):
            return "copies and transposes"
        return "conv backward" if "transpose" in tokens else "conv forward"
    for token in reversed(tokens):
        for marker, name in _SCOPES:
            if token == marker or token.endswith(marker):
                return name
    if hlo_name.startswith(("copy", "transpose")):
        return "copies and transposes"
    return "other"


def op_names(hlo_text: str) -> dict[str, str]:
    """Each op of a compiled HLO module's text, by name: its ``op_name`` metadata."""
    names = {}
    for line in hlo_text.splitlines():
        match = _OP.match(line)
        if match:
            names[match.group(1)] = match.group(2)
    return names


def op_times(trace_dir: str) -> collections.Counter:
    """Microseconds per event name of the Perfetto trace under ``trace_dir``."""
    files = glob.glob(os.path.join(trace_dir, "**", "*perfetto_trace.json.gz"), recursive=True)
    if not files:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir}")
    with gzip.open(files[0], "rt") as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    total = collections.Counter()
    for event in events:
        if event.get("ph") == "X":
            total[event["name"]] += event.get("dur", 0)
    return total


def breakdown(call, hlo_text: str, steps: int = 3) -> dict[str, float]:
    """Milliseconds per step in each of :data:`CATEGORIES` (and ``"total"``, their sum), over
    ``steps`` calls of ``call`` (one compiled step, already run once) under the profiler."""
    names = op_names(hlo_text)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(steps):
                call()
        times = op_times(trace_dir)
    ms = dict.fromkeys(CATEGORIES, 0.0)
    for name, us in times.items():
        if name in names:
            ms[category(names[name], name)] += us / 1e3 / steps
    ms["total"] = sum(ms[c] for c in CATEGORIES)
    return ms


_TORCH = (  # (substrings of an op's or an enclosing op's name, category); the first rule that
    # matches any of the names wins: the optimizer's adds are the optimizer's, a conv's copies the conv's
    (("Optimizer.",), "optimizer update"),
    (("convolution_backward", "ConvolutionBackward"), "conv backward"),
    (("convolution",), "conv forward"),
    (("batch_norm", "BatchNorm", "avg_pool3d", "AvgPool3D"), "normalisation"),  # 3-D: LRN's sum
    (("max_pool", "MaxPool", "avg_pool", "AvgPool", "adaptive_avg", "AdaptiveAvg"), "pooling"),
    (("addmm", "Addmm", "aten::mm", "MmBackward", "aten::linear"), "linear"),
    (("cross_entropy", "log_softmax", "LogSoftmax", "nll_loss", "NllLoss"), "loss"),
    (("copy", "contiguous", "permute", "Permute", "aten::cat", "CatBackward", "clone"),
     "copies and transposes"),
    (("relu", "Relu", "threshold", "Threshold", "clamp", "dropout", "bernoulli", "aten::mul",
      "aten::add", "aten::div", "aten::pow", "MulBackward", "DivBackward", "PowBackward"),
     "elementwise"),
)


def torch_category(names) -> str:
    """The category of a PyTorch profiler event, from its name and those of its enclosing
    events: the first rule of ``_TORCH`` that matches one of them decides."""
    for markers, name_of in _TORCH:
        if any(m in name for name in names for m in markers):
            return name_of
    return "other"


def torch_breakdown(call, torch, steps: int = 3) -> dict[str, float]:
    """As :func:`breakdown`, for a PyTorch step: each op's own CPU time (``torch.profiler``,
    ``steps`` calls of ``call``, already run once), in milliseconds per step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            call()
    ms = dict.fromkeys(CATEGORIES, 0.0)
    for event in prof.events():
        names, parent = [event.name], event.cpu_parent
        while parent is not None:
            names.append(parent.name)
            parent = parent.cpu_parent
        ms[torch_category(names)] += event.self_cpu_time_total / 1e3 / steps
    ms["total"] = sum(ms[c] for c in CATEGORIES)
    return ms
