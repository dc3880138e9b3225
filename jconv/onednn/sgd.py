"""SGD with momentum in one pass over each array (``csrc/sgd_update.cc``, in the native library).

For one parameter ``p``, its gradient ``g`` and momentum buffer ``m``, at rate ``lr``::

    g₁ = g + wd·p        m' = μ·m + g₁        u = g₁ + μ·m' (Nesterov) or m'
    p' = p − lr·u        total = Σ p'  (NaN or infinite where some p' is)

which is optax's ``chain(add_decayed_weights(wd), sgd(1, momentum=μ, nesterov))`` followed
by the training step's update at rate ``lr``. XLA:CPU runs that chain as three loops and a
reduction over each array, writing ``g₁`` and reading it back; the handler reads ``p``,
``g`` and ``m`` once and writes ``p'`` and ``m'`` once, the sum included. Parameters are
replicated over devices, so over several devices every device updates its own copy.

>>> import jax.numpy as jnp
>>> from jconv.onednn import sgd
>>> p2, m2, total = sgd.update(jnp.ones(3), jnp.ones(3), jnp.zeros(3), 0.5, momentum=0.9)
>>> p2.tolist(), m2.tolist(), float(total)
([0.5, 0.5, 0.5], [1.0, 1.0, 1.0], 1.5)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jconv.onednn import library


def update(p, g, m, lr, *, momentum: float, weight_decay: float = 0.0, nesterov: bool = False):
    """One SGD-with-momentum step of one float32 array (module docstring).

    Args:
      p, g, m: the parameter, its gradient and its momentum buffer, float32, one shape.
      lr: the step's rate, a scalar (traced or not).
      momentum, weight_decay, nesterov: ``μ``, ``wd`` and the Nesterov form.

    Returns:
      ``(p', m', total)``: the new parameter and momentum, and ``Σ p'`` (float32 scalar).

    Raises:
      ValueError, TypeError: shapes or dtypes that differ, or are not float32.
      RuntimeError: the native library is unavailable here (:func:`library.status` says why).
    """
    shapes = {name: tuple(jnp.shape(a)) for name, a in (("p", p), ("g", g), ("m", m))}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"sgd update: shapes {shapes}; expected one shape")
    dtypes = {name: jnp.result_type(a) for name, a in (("p", p), ("g", g), ("m", m))}
    if any(d != jnp.float32 for d in dtypes.values()):
        raise TypeError(f"sgd update: dtypes {dtypes}; expected float32")
    if jnp.ndim(lr) != 0:
        raise ValueError(f"sgd update: lr.shape={jnp.shape(lr)}; expected a scalar")
    library.library()  # raises where the library is unavailable, saying why
    shape = shapes["p"]
    call = jax.ffi.ffi_call(library.target("sgd_update"),
                            (jax.ShapeDtypeStruct(shape, jnp.float32), jax.ShapeDtypeStruct(shape, jnp.float32),
                             jax.ShapeDtypeStruct((), jnp.float32)))
    return call(p, g, m, jnp.asarray(lr, jnp.float32), momentum=np.float32(momentum),
                weight_decay=np.float32(weight_decay), nesterov=np.int64(bool(nesterov)))
