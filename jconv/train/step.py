"""The jitted train and eval steps of a model, the state they carry, and XLA's FLOP count of a step.

``nnx.split(model, nnx.Param, ...)`` once gives a static ``graphdef`` and two pure pytrees; one
``jax.jit`` step merges them, computes the loss (:mod:`jconv.train.recipe`), applies the update
at the rate it is given and returns the new pytrees (the package docstring, "How a step runs").
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jconv.train.checkpoint import TrainState
from jconv.train.config import TrainConfig
from jconv.train.data import Placement
from jconv.train.recipe import _outputs, classification_loss, ema_update, make_optimizer

__all__ = ["StepCache", "init_state", "make_steps", "evaluated", "step_flops", "update_impl"]

# The TrainConfig fields a step reads (its optimizer, loss and precision); the others (steps,
# rates, schedule, logging, checkpoints, seed, data) stay outside the step.
STEP_FIELDS = ("optimizer", "momentum", "weight_decay", "nesterov", "dtype", "aux_weight",
               "label_smoothing", "ema_decay", "update")


def cast_floats(tree, dtype):
    """``tree`` with its floating leaves cast to ``dtype``; other leaves (RNG keys, counts) as they are."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def update_impl(config: TrainConfig) -> str:
    """How the optimizer's step runs for ``config.update``: ``"fused"`` or ``"optax"``.

    ``"auto"`` is ``"optax"``. The fused pass updates AlexNet's fc6 arrays (37.7M) 2.4× faster
    than optax's chain as XLA:CPU compiles it alone (64 against 156 ms), but inside the whole
    training step of the BatchNorm AlexNet at batch 16 the step was 7–10% slower with it
    (medians of 9–11 interleaved steps, 2 cores), where XLA runs optax's loops beside the
    backward pass's other work.
    """
    return "optax" if config.update == "auto" else config.update


def _trace(state):
    """The momentum buffers in an optax SGD state (its one ``TraceState``)."""
    if isinstance(state, optax.TraceState):
        return state.trace
    if isinstance(state, tuple) and not hasattr(state, "_fields"):
        return next((t for t in map(_trace, state) if t is not None), None)
    return None


def _with_trace(state, trace):
    if isinstance(state, optax.TraceState):
        return optax.TraceState(trace=trace)
    if isinstance(state, tuple) and not hasattr(state, "_fields"):
        return tuple(_with_trace(s, trace) for s in state)
    return state


def fused_sgd(params, grads, tx_state, lr, config: TrainConfig):
    """SGD with momentum by :func:`jconv.onednn.sgd.update` on every parameter: the new
    parameters, the optax state with its new momentum, and each parameter's sum."""
    from jconv.onednn import sgd

    trace = _trace(tx_state)
    leaves, treedef = jax.tree.flatten(params)
    out = [sgd.update(p, g, m, lr, momentum=config.momentum, weight_decay=config.weight_decay,
                      nesterov=config.nesterov)
           for p, g, m in zip(leaves, treedef.flatten_up_to(grads), treedef.flatten_up_to(trace))]
    new_params = treedef.unflatten([o[0] for o in out])
    return new_params, _with_trace(tx_state, treedef.unflatten([o[1] for o in out])), [o[2] for o in out]


def make_steps(graphdef, eval_graphdef, tx, batch_shape, num_classes, traces, config):
    """The jitted train step (donating the optimizer state and BatchNorm statistics) and eval
    step; each counts its traces in ``traces``.

    The train step takes the step's learning rate as an argument (:mod:`jconv.train.recipe`) and
    returns the new state, the loss of the main logits and whether the training loss and the new
    parameters are finite. With ``ema_decay`` the optimizer state is ``(tx_state, steps, (θ̄, rest̄))``.
    """
    b = batch_shape[0]
    dtype = jnp.dtype(config.dtype)
    fused = update_impl(config) == "fused"

    def forward(graphdef, params, rest, x):
        if dtype != jnp.float32:
            params, x = cast_floats(params, dtype), x.astype(dtype)
        model = nnx.merge(graphdef, params, rest, copy=True)
        return model, model(x)

    def loss_fn(params, rest, x, y):
        model, out = forward(graphdef, params, rest, x)
        chex.assert_shape(list(_outputs(out)), (b, num_classes))
        with jax.named_scope("loss"):
            loss, main = classification_loss(out, y, config.aux_weight, config.label_smoothing)
        _, new_rest = nnx.state(model, nnx.Param, ...)
        new_rest = jax.tree.map(lambda new, old: new.astype(old.dtype), new_rest, rest)
        return loss, (main, new_rest)

    def train_step(params, rest, opt_state, x, y, lr):
        traces["train_step"] += 1
        chex.assert_shape(x, batch_shape)
        chex.assert_shape(y, (b,))
        chex.assert_type(y, jnp.int32)
        if x.dtype == jnp.uint8:
            x = x.astype(jnp.float32) / 255.0
        chex.assert_type(x, jnp.float32)
        tx_state, count, average = opt_state if config.ema_decay else (opt_state, None, None)
        (loss, (main, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, y)
        with jax.named_scope("optimizer"):  # the update's ops, named for profiles
            if fused:
                params, tx_state, sums = fused_sgd(params, grads, tx_state, lr, config)
            else:
                updates, tx_state = tx.update(grads, tx_state, params)
                params = optax.apply_updates(params, jax.tree.map(lambda u: (lr * u).astype(u.dtype), updates))
                sums = [jnp.sum(p) for p in jax.tree.leaves(params)]
            # A sum is NaN or infinite where any of its terms is (or where a finite sum
            # overflows, past 3e38): one reduction per array, no array of flags written
            # (the study's BatchNorm AlexNet: 5% of its step).
            finite = jnp.stack([jnp.isfinite(loss)] + [jnp.isfinite(s) for s in sums]).all()
            if config.ema_decay:
                opt_state = (tx_state, count + 1, ema_update(average, (params, rest), count, config.ema_decay))
            else:
                opt_state = tx_state
        return params, rest, opt_state, main, finite

    def eval_step(params, rest, x, y, weight):
        traces["eval_step"] += 1
        if x.dtype == jnp.uint8:
            x = x.astype(jnp.float32) / 255.0
        logits = _outputs(forward(eval_graphdef, params, rest, x)[1])[0].astype(jnp.float32)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
        return (correct * weight).sum(), (losses * weight).sum()

    # The step donates the model's other state and the optimizer's, not the parameters: a
    # donated parameter's buffer becomes the updated parameter's, and XLA copies each
    # parameter first since the backward pass still reads it (AlexNet's 61M: 10% of the
    # step). A fresh buffer costs nothing with the heap reused (jconv.platform).
    return jax.jit(train_step, donate_argnums=(1, 2)), jax.jit(eval_step)


class StepCache:
    """Jitted steps kept across :func:`jconv.train.train` calls in one process.

    A run of a model with the same structure (``nnx.graphdef``), batch shape, classes and step
    settings (``STEP_FIELDS`` of its :class:`TrainConfig`) as an earlier run that shared the cache
    reuses that run's compiled train and eval steps: it neither traces nor compiles them again
    (``result["train_step_traces"]`` is then 0). The steps are pure functions of their
    arguments, so the numbers are those of fresh steps. Useful where one process trains many
    short runs of few shapes (the scaling study's trunks and branches: a step's compilation is
    seconds, and a step that holds a host callback is not kept on disk by JAX's cache).

    >>> cache = StepCache(size=4)
    >>> len(cache)
    0
    """

    def __init__(self, size: int = 32):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size: {size!r}; expected an int >= 1 (steps kept)")
        self.size = size
        self._steps: dict = {}

    def __len__(self) -> int:
        return len(self._steps)

    def get(self, key, make):
        """The steps of ``key``, made by ``make()`` the first time (least recently used dropped);
        made afresh where ``key`` does not hash (a model with a static attribute that does not)."""
        try:
            hash(key)
        except TypeError:
            return make()
        if key in self._steps:
            self._steps[key] = self._steps.pop(key)  # most recently used last
        else:
            if len(self._steps) >= self.size:
                del self._steps[next(iter(self._steps))]
            self._steps[key] = make()
        return self._steps[key]


def _step_key(graphdef, eval_graphdef, batch_shape, num_classes, config) -> tuple:
    """What a step's trace depends on: the model, shapes, step settings and the ops' switches."""
    from jconv.kernels import lax_nans
    from jconv.onednn import library

    return (graphdef, eval_graphdef, tuple(batch_shape), num_classes,
            tuple(getattr(config, f) for f in STEP_FIELDS), library.turned_off(), lax_nans.enabled())


def evaluated(state: TrainState, config: TrainConfig) -> tuple:
    """The ``(params, rest)`` a run evaluates: the weight average with ``ema_decay``, else the live ones."""
    return state.opt_state[2] if config.ema_decay else (state.params, state.rest)


def init_state(model, config, placement, num_classes, traces, cache: StepCache | None = None):
    """The model's state replicated on the mesh, the schedule, the jitted train and eval steps,
    and the trace counts those steps add to (``traces``, or their entry's in ``cache``).

    ``model`` is left in train mode; its own arrays are not donated.
    """
    model.eval()
    eval_graphdef = nnx.graphdef(model)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, schedule = make_optimizer(config)
    # Copies: the step donates its inputs, and the model keeps its own arrays.
    params, rest = placement.replicate((params, rest))
    opt_state = jax.jit(tx.init, out_shardings=placement.replicated)(params)
    if config.ema_decay:
        opt_state = (opt_state, *placement.replicate((np.zeros((), np.int32), (params, rest))))
    def make(traces=traces):
        return (*make_steps(graphdef, eval_graphdef, tx, placement.batch_shape, num_classes, traces, config),
                traces)

    if cache is None:
        train_step, eval_step, traces = make()
    else:
        key = _step_key(graphdef, eval_graphdef, placement.batch_shape, num_classes, config)
        train_step, eval_step, traces = cache.get(key, lambda: make({"train_step": 0, "eval_step": 0}))
    return TrainState(params, rest, opt_state), schedule, train_step, eval_step, traces


def step_flops(model: nnx.Module, config: TrainConfig, image_shape: tuple[int, ...], num_classes: int) -> int | None:
    """XLA's FLOP count of one compiled train step of ``model`` on a batch of ``config.batch_size``.

    The step is traced for counting (:func:`jconv.measure.counting`: oneDNN off, so XLA sees the
    convolutions it would otherwise hand to oneDNN, and no NaN masks); the count covers the forward and backward
    passes, the loss and the optimizer update, on this process's first device (every process of a
    multi-process job can count). None where XLA does not count.
    """
    from jconv.measure import counting, xla_flops

    placement = Placement(jax.local_devices()[:1], config.batch_size, config.batch_size, tuple(image_shape))
    with counting():
        state, _, train_step, _, _ = init_state(model, config, placement, num_classes,
                                                 {"train_step": 0, "eval_step": 0})
        args = (jax.ShapeDtypeStruct(placement.batch_shape, jnp.float32),
                jax.ShapeDtypeStruct((config.batch_size,), jnp.int32), jax.ShapeDtypeStruct((), jnp.float32))
        compiled = train_step.lower(*state, *args).compile()
    return xla_flops(compiled)
