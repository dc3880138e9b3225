"""Whole-model rows: the training step of AlexNet, GoogLeNet and MobileNet v1 with every op
at ``impl="auto"`` against every op at ``impl="lax"`` and against the same network in
PyTorch (``torch``, eager, channels-last; :mod:`experiments.bench.torch_models`), in images
per second.

The step is :mod:`jconv.train`'s own (``nnx.split`` → one jitted step: forward, softmax
cross-entropy, backward, optax SGD with momentum, the optimizer state donated, the state fed back), on
one device, with the model in training mode (dropout on) and a fixed random batch. The
first call (compilation and one step) is timed apart, as ``compile_s``; the samples that
follow are timed side by side with :func:`jconv.measure.interleaved`, as the layer cases are.
Then, for each implementation in ``config.model_breakdown``, a profiled run of the same step
says where its time goes (:func:`experiments.bench.breakdown.breakdown`: milliseconds per
category, under the profiler's own overhead, so their total exceeds the timed step a little);
``"torch"`` there sorts PyTorch's step into the same categories (``torch.profiler``), so the two
sides compare category by category.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.bench.breakdown import breakdown, torch_breakdown
from experiments.bench.torch_models import torch_model
from jconv import models, train
from jconv.measure import interleaved, seconds
from jconv.train.data import Placement

IMPLS = ("lax", "auto")
NUM_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class ModelCase:
    """One model's training step at ``config.model_batch``, ``model_width`` and
    ``model_input_size`` (0: the paper's input size)."""

    name: str
    model: str
    suite: str = "models"
    op: str = "model"
    kwargs: dict = dataclasses.field(default_factory=dict)


def model_cases(config) -> list[ModelCase]:
    """One :class:`ModelCase` per name in ``config.models``: a model's name, or
    ``name:norm`` for its form with another normalisation (``alexnet:batch``: BatchNorm
    after every conv and no LRN, the scaling study's AlexNet)."""
    cases = []
    for entry in config.models:
        model, _, norm = entry.partition(":")
        if model not in models.list_models() or (norm and norm not in models.NORMS):
            raise ValueError(f"config.models has unknown {entry!r}; known "
                             f"{models.list_models()}, each optionally with :norm for a norm "
                             f"of {models.NORMS}")
        cases.append(ModelCase(f"model_{model}" + (f"_{norm}" if norm else ""), model,
                               kwargs={"norm": norm} if norm else {}))
    return cases


def _build(case: ModelCase, impl: str, config):
    return models.build(case.model, impl=impl, width=config.model_width,
                        input_size=config.model_input_size or None, num_classes=NUM_CLASSES,
                        rngs=nnx.Rngs(config.seed), **case.kwargs)


def step_call(case: ModelCase, impl: str, config):
    """``(call, values, held)``: a no-argument call running one training step of the model
    built with ``impl`` (the state it returns is the next call's); what describes it, with
    the first call's time (``compile_s``); and the latest state, loss, finiteness and the
    step's trace count."""
    model = _build(case, impl, config)
    shape = model.input_shape
    b = config.model_batch
    tconfig = train.TrainConfig(batch_size=b, optimizer="sgd", learning_rate=1e-3, momentum=0.9,
                                seed=config.seed)
    placement = Placement(jax.devices()[:1], b, b, shape)
    traces = {"train_step": 0, "eval_step": 0}
    state, _, step, _, _ = train.step.init_state(model, tconfig, placement, NUM_CLASSES, traces)
    x = jnp.asarray(np.random.default_rng(config.seed).standard_normal((b, *shape), np.float32))
    y = jnp.arange(b, dtype=jnp.int32) % NUM_CLASSES
    rate = np.float32(tconfig.learning_rate)  # the step takes its rate (jconv.train.recipe)
    held = {"state": tuple(state), "loss": None, "finite": None, "traces": traces,
            "hlo": lambda: step.lower(*held["state"], x, y, rate).compile().as_text()}

    def call():
        *new, loss, finite = step(*held["state"], x, y, rate)
        held.update(state=tuple(new), loss=loss, finite=finite)
        jax.block_until_ready(new)

    h, w, _ = shape
    size = f"{h}²" if h == w else f"{h}×{w}"
    values = {"model": case.model, **case.kwargs, "batch": b, "input_shape": list(shape),
              "width": config.model_width,
              "layer": (f"{case.model}" + "".join(f" ({v} norm)" for v in case.kwargs.values())
                        + f" train step, batch {b}, {size}"
                        + (" (reduced)" if config.model_input_size else "")
                        + (f", width {config.model_width:g}" if config.model_width != 1 else "")),
              "params": sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))),
              "compile_s": seconds(call)}
    return call, values, held


def torch_step_call(case: ModelCase, config, torch):
    """As :func:`step_call`, for the model in PyTorch: the same batch shape, SGD with
    momentum and cross-entropy (each auxiliary head's weighed as in :mod:`jconv.train`)."""
    model = _build(case, "auto", config)
    port = torch_model(model, torch).train()
    tconfig = train.TrainConfig(batch_size=config.model_batch, optimizer="sgd")
    opt = torch.optim.SGD(port.parameters(), lr=1e-3, momentum=0.9)
    h, w, c = model.input_shape
    b = config.model_batch
    x = torch.from_numpy(np.random.default_rng(config.seed).standard_normal((b, h, w, c), np.float32))
    x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    y = torch.arange(b) % NUM_CLASSES
    held = {"loss": None, "finite": None, "traces": {"train_step": 0}}
    cross_entropy = torch.nn.functional.cross_entropy

    def call():
        opt.zero_grad(set_to_none=True)
        out = port(x)
        main, *aux = out if isinstance(out, tuple) else (out,)
        loss = cross_entropy(main, y) + sum(tconfig.aux_weight * cross_entropy(a, y) for a in aux)
        loss.backward()
        opt.step()
        held.update(loss=loss.item(), finite=bool(torch.isfinite(loss)))

    values = {"model": case.model, "batch": b, "params": sum(p.numel() for p in port.parameters()),
              "torch_version": torch.__version__, "compile_s": seconds(call)}
    return call, values, held


def measure_model(case: ModelCase, names, config, torch=None) -> dict[str, dict]:
    """The training step of every implementation in ``names`` (``"torch"``: PyTorch's, with
    the ``torch`` module given), timed together."""
    calls, values, held = {}, {}, {}
    for name in names:
        make = (lambda c, n, k: torch_step_call(c, k, torch)) if name == "torch" else step_call
        calls[name], values[name], held[name] = make(case, name, config)
    timings = interleaved(calls, config.warmup, config.model_repeats, config.min_sample_s)
    for name, timing in timings.items():
        values[name].update(timing, images_per_s=config.model_batch / timing["time_s"],
                            loss=float(held[name]["loss"]),
                            finite=bool(held[name]["finite"]),
                            traces=held[name]["traces"]["train_step"])
    for name in names:
        if name in config.model_breakdown:
            values[name]["breakdown_ms"] = (torch_breakdown(calls[name], torch) if name == "torch"
                                            else breakdown(calls[name], held[name]["hlo"]()))
    return values
