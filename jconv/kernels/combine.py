"""One function, computed by one kernel and differentiated by others.

Every jconv kernel of an op computes the same function, so the forward pass may come
from the fastest forward kernel while each argument's derivative comes from the kernel
whose *transpose* is fastest. :func:`differentiated_by` builds that function as a
``jax.custom_jvp``: its tangent is

.. math:: \\dot y = \\sum_i \\partial_i f_i(a)\\,[\\dot a_i]

where ``f_i`` is the kernel chosen for argument ``i``. The op is linear in each array
argument, so reverse mode transposes each term: the input gradient of the ``lax``
kernel is XLA's own (fast) convolution, the weight gradient of a shifted-window kernel
one strided slice and contraction per tap. Forward mode and higher orders work, as
the tangent is ordinary JAX code.
"""

from __future__ import annotations

from collections.abc import Callable

import jax


def differentiated_by(primal: Callable, *per_argument: Callable) -> Callable:
    """``primal``, whose derivative in argument ``i`` is that of ``per_argument[i]``.

    All functions take the same array arguments and compute the same values; arguments
    past ``len(per_argument)`` are not differentiable.

    >>> import jax, jax.numpy as jnp
    >>> f = differentiated_by(jnp.multiply, jnp.multiply, lambda a, b: b * a)
    >>> float(f(2.0, 3.0)), [float(g) for g in jax.grad(f, argnums=(0, 1))(2.0, 3.0)]
    (6.0, [3.0, 2.0])
    """

    @jax.custom_jvp
    def f(*args):
        return primal(*args)

    @f.defjvp
    def f_jvp(args, tangents):
        out = None
        for i, kernel in enumerate(per_argument):
            def in_argument_i(a, i=i, kernel=kernel):
                return kernel(*args[:i], a, *args[i + 1:])
            term = jax.jvp(in_argument_i, (args[i],), (tangents[i],))[1]
            out = term if out is None else out + term
        return primal(*args), out

    return f
