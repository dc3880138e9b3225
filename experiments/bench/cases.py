"""The benchmark's cases: one layer of a real network each, as data naming its op, the
shapes of its arrays and its keyword arguments; and what is known of a case without
running it (its FLOPs, the implementations it times, what ``auto`` picks).

:data:`CASES` are the layer table (every implementation of each op);
:data:`VERSUS_TORCH` are issue 13's nine convolutions at batch 8, timed against PyTorch
with ``lax``, ``onednn`` and ``auto`` only, the dense 3×3 ones in bfloat16 as well
(an implementation name ``"auto:bfloat16"`` times ``auto`` on bfloat16 arrays)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax

import jconv
from jconv.ops import BUILTIN_OPS, dispatch, registry

POOLS = ("max_pool", "avg_pool", "local_response_norm")


@dataclasses.dataclass(frozen=True)
class Case:
    """One layer: ``op`` on arrays of ``shapes(dims)``, with keyword arguments ``kwargs``.

    ``suite`` is the table the case's rows go to (``"layers"`` or ``"versus_torch"``);
    ``batch`` a fixed batch size (None: ``config.batch``); ``timed`` the implementations
    it times (empty: every implementation of the op); ``bfloat16`` whether ``onednn`` and
    ``auto`` are also timed on bfloat16 arrays.
    """

    name: str
    op: str
    layer: str
    dims: dict
    shapes: Callable[[dict], tuple]
    kwargs: dict = dataclasses.field(default_factory=dict)
    suite: str = "layers"
    batch: int | None = None
    timed: tuple[str, ...] = ()
    bfloat16: bool = False


def _x(d):
    return (d["B"], d["H"], d["H"], d["C"])


def _local(d, k):
    """Weights of a ``k×k`` locally connected layer: a ``k×k×C×K`` kernel per output."""
    kernel = (k, k, d["C"], d["K"])
    return (*jconv.output_shape("conv", _x(d), kernel, padding="VALID")[1:3], *kernel)


CASES = (
    Case("conv_early", "conv", "MobileNet conv1 3×3/2 224² 3→32", dict(H=224, C=3, K=32),
         lambda d: (_x(d), (3, 3, d["C"], d["K"])), dict(stride=2)),
    Case("conv_late", "conv", "GoogLeNet 4a 3×3", dict(H=14, C=96, K=208),
         lambda d: (_x(d), (3, 3, d["C"], d["K"]))),
    Case("grouped_early", "conv", "AlexNet conv2 5×5 g2", dict(H=27, C=96, K=256),
         lambda d: (_x(d), (5, 5, d["C"] // 2, d["K"])), dict(groups=2)),
    Case("grouped_late", "conv", "AlexNet conv4 3×3 g2", dict(H=13, C=384, K=384),
         lambda d: (_x(d), (3, 3, d["C"] // 2, d["K"])), dict(groups=2)),
    Case("depthwise_early", "depthwise_conv", "MobileNet dw 56×56×128", dict(H=56, C=128),
         lambda d: (_x(d), (3, 3, 1, d["C"]))),
    Case("depthwise_s2", "depthwise_conv", "MobileNet dw/2 112×112×64", dict(H=112, C=64),
         lambda d: (_x(d), (3, 3, 1, d["C"])), dict(stride=2)),
    Case("depthwise_late", "depthwise_conv", "MobileNet dw 14×14×512", dict(H=14, C=512),
         lambda d: (_x(d), (3, 3, 1, d["C"]))),
    Case("pointwise_early", "pointwise_conv", "MobileNet pw 56×56 128→128",
         dict(H=56, C=128, K=128), lambda d: (_x(d), (d["C"], d["K"]))),
    Case("pointwise_late", "pointwise_conv", "MobileNet pw 7×7 1024→1024",
         dict(H=7, C=1024, K=1024), lambda d: (_x(d), (d["C"], d["K"]))),
    Case("separable", "separable_conv", "MobileNet dw+pw 28×28 256→256",
         dict(H=28, C=256, K=256), lambda d: (_x(d), (3, 3, 1, d["C"]), (d["C"], d["K"]))),
    Case("spatially_separable", "spatially_separable_conv", "Inception-v3 7×1,1×7 17×17",
         dict(H=17, C=128, K=128),
         lambda d: (_x(d), (7, 1, d["C"], d["K"]), (1, 7, d["K"], d["K"]))),
    Case("per_map", "per_map_conv", "Type 1 5×5, 16 maps × 8 filters", dict(H=28, C=16, K=8),
         lambda d: (_x(d), (5, 5, d["K"]))),
    Case("shared_filter", "shared_filter_conv", "Type 2.1 5×5, 64 maps, 32 filters",
         dict(H=28, C=64, K=32), lambda d: (_x(d), (5, 5, d["K"]))),
    Case("conv_transpose", "conv_transpose", "decoder 4×4/2 14→28, 64→32",
         dict(H=14, C=64, K=32), lambda d: (_x(d), (4, 4, d["C"], d["K"])),
         dict(stride=2, padding=1)),
    Case("conv_transpose_late", "conv_transpose", "decoder 3×3/2 7→14, 256→128",
         dict(H=7, C=256, K=128), lambda d: (_x(d), (3, 3, d["C"], d["K"])),
         dict(stride=2, padding=1, output_padding=1)),
    Case("local_conv", "local_conv", "locally connected 3×3, 13×13×32", dict(H=13, C=32, K=32),
         lambda d: (_x(d), _local(d, 3))),
    Case("depth_sliding", "depth_sliding_conv", "3×3×3 over 64 maps, 8 filters",
         dict(H=28, C=64, K=8), lambda d: (_x(d), (3, 3, 3, d["K"]))),
    Case("max_pool_early", "max_pool", "AlexNet pool1 3×3/2", dict(H=55, C=96),
         lambda d: (_x(d),), dict(window=3, stride=2)),
    Case("max_pool_late", "max_pool", "GoogLeNet 3×3/1 SAME 28×28×256", dict(H=28, C=256),
         lambda d: (_x(d),), dict(window=3, stride=1, padding="SAME")),
    Case("avg_pool", "avg_pool", "GoogLeNet inception pool 3×3/1 28×28×192", dict(H=28, C=192),
         lambda d: (_x(d),), dict(window=3, stride=1, padding="SAME")),
    Case("avg_pool_global", "avg_pool", "GoogLeNet final 7×7 pool", dict(H=7, C=1024),
         lambda d: (_x(d),), dict(window=7)),
    Case("lrn_early", "local_response_norm", "AlexNet LRN 55×55×96", dict(H=55, C=96),
         lambda d: (_x(d),)),
    Case("lrn_late", "local_response_norm", "AlexNet LRN 27×27×256", dict(H=27, C=256),
         lambda d: (_x(d),)),
    Case("mobilenet_block", "separable_conv", "MobileNet block train step 28×28 256→256",
         dict(H=28, C=256, K=256), lambda d: (_x(d), (3, 3, 1, d["C"]), (d["C"], d["K"]))),
)
TRAIN_STEP = "mobilenet_block"
NAIVE = "naive"  # per_map_conv as a framework would run it (tiled depthwise lax conv)
BF16 = ":bfloat16"  # suffix of an implementation timed on bfloat16 arrays


def _versus_torch(name, layer, k, h, c, out, groups=1, bfloat16=False):
    """One of issue 13's nine: a ``k×k`` SAME conv of ``groups`` groups at batch 8
    (``out=None``: a depthwise conv of ``C`` maps)."""
    if out is None:
        return Case(name, "depthwise_conv", layer, dict(H=h, C=c),
                    lambda d: (_x(d), (k, k, 1, d["C"])), dict(padding="SAME"),
                    "versus_torch", 8, ("lax", "onednn", "auto"))
    return Case(name, "conv", layer, dict(H=h, C=c, K=out),
                lambda d: (_x(d), (k, k, d["C"] // groups, d["K"])),
                dict(padding="SAME", **({"groups": groups} if groups > 1 else {})),
                "versus_torch", 8, ("lax", "onednn", "auto"), bfloat16)


VERSUS_TORCH = (
    _versus_torch("vs_3x3_56", "3×3 56² 64→64", 3, 56, 64, 64, bfloat16=True),
    _versus_torch("vs_3x3_28", "3×3 28² 128→128", 3, 28, 128, 128, bfloat16=True),
    _versus_torch("vs_3x3_112", "3×3 112² 32→32", 3, 112, 32, 32, bfloat16=True),
    _versus_torch("vs_1x1_56", "1×1 56² 64→128", 1, 56, 64, 128),
    _versus_torch("vs_dw_56", "depthwise 3×3 56² C=64", 3, 56, 64, None),
    _versus_torch("vs_dw_112", "depthwise 3×3 112² C=32", 3, 112, 32, None),
    _versus_torch("vs_dw_14", "depthwise 3×3 14² C=512", 3, 14, 512, None),
    _versus_torch("vs_g2_5x5_27", "AlexNet conv2 5×5 g2 27² 96→256", 5, 27, 96, 256, groups=2),
    _versus_torch("vs_g2_3x3_56", "3×3 g2 56² 64→64", 3, 56, 64, 64, groups=2),
)
"""Issue 13's nine convolutions (fp32, batch 8, SAME), against PyTorch on channels-last
tensors."""


def split_impl(name: str) -> tuple[str, str]:
    """``(impl, dtype)`` of a timed implementation's name: ``"auto:bfloat16"`` →
    ``("auto", "bfloat16")``, ``"lax"`` → ``("lax", "float32")``."""
    impl, _, dtype = name.partition(":")
    return impl, dtype or "float32"


def registered_cases() -> tuple[Case, ...]:
    """One case per variant registered beyond jconv's own ops (``OpSpec.layer``): the
    layer it puts in place of GoogLeNet 3a's 3×3 conv (28×28, 96→128)."""
    out = []
    for variant, spec in registry.variants().items():
        if spec.name in BUILTIN_OPS:
            continue
        form = spec.layer
        out.append(Case(spec.name, spec.name, f"variant {variant!r} for GoogLeNet 3a 3×3",
                        dict(H=28, C=96, K=128),
                        lambda d, form=form: (_x(d), *form.weights(d["C"], d["K"], (3, 3))
                                              .values()),
                        form.op_kwargs((3, 3), 1, "SAME")))
    return tuple(out)


def selected(config) -> list[Case]:
    """The cases ``config.cases`` names, in table order (all of them for ``()``): the
    layers, the registered variants' cases (:func:`registered_cases`), then the nine
    against PyTorch."""
    cases = CASES + registered_cases() + VERSUS_TORCH
    names = [c.name for c in cases]
    unknown = set(config.cases) - set(names)
    if unknown:
        raise ValueError(f"config.cases has unknown {sorted(unknown)}; known {names}")
    return [c for c in cases if not config.cases or c.name in config.cases]


def case_shapes(case: Case, config) -> tuple:
    """The case's array shapes at its batch (``config.batch`` unless it fixes one), capped
    by ``max_size``/``max_channels``."""
    dims = dict(case.dims, B=case.batch or config.batch)
    for key in dims:
        cap = {"H": config.max_size}.get(key, config.max_channels if key != "B" else 0)
        if cap:
            dims[key] = min(dims[key], cap)
    return case.shapes(dims)


def call(case: Case, fn, arrays, **extra):
    """``fn`` (``jconv.<op>``, ``cost.<op>``, ...) on the case's arrays (or their shapes)
    and keyword arguments, with ``extra`` keywords."""
    kwargs = dict(case.kwargs, **extra)
    if case.op == "spatially_separable_conv":
        return fn(arrays[0], list(arrays[1:]), **kwargs)
    return fn(*arrays, **kwargs)


def flops(case: Case, shape_list, pass_: str) -> float:
    """Dense FLOPs of the case's pass, from :mod:`jconv.cost`."""
    forward = call(case, registry.get(case.op).cost, shape_list).flops
    if case.name == TRAIN_STEP:  # SGD update
        forward += jconv.param_count(case.op, *shape_list[1:], bias=False) * 2 / 3
    return forward * ({"fwd": 1, "fwd_bwd": 2 if case.op in POOLS else 3}[pass_])


def impls(case: Case) -> tuple[str, ...]:
    """What the case times: the op's impls (or the case's ``timed``), its naive framework
    form if any, and auto; then ``onednn`` and ``auto`` on bfloat16 arrays if the case asks."""
    if case.name == TRAIN_STEP:
        return ("lax", "shift", "auto")
    naive = (NAIVE,) if case.op == "per_map_conv" else ()
    runs = [i for i in case.timed or registry.get(case.op).impls + naive + ("auto",)
            if i != "onednn" or _onednn_runs()]
    if case.bfloat16:
        runs += [i + BF16 for i in ("onednn", "auto") if i in runs]
    return tuple(runs)


def _onednn_runs() -> bool:
    """Whether ``impl="onednn"`` runs oneDNN here (else it would time its ``lax`` fallback)."""
    return jconv.backends()["onednn"].available and jax.default_backend() == "cpu"


def auto_choice(case: Case, shape_list, dtype: str = "float32") -> dispatch.Choice:
    """What ``impl="auto"`` runs for the case on ``dtype`` arrays, and why
    (:func:`jconv.which_impl`)."""
    return call(case, lambda *shapes, **kwargs: jconv.which_impl(case.op, *shapes, **kwargs),
                shape_list, dtype=dtype)
