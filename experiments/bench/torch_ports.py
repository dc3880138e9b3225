"""The benchmark's ``torch`` column (CPU only): each op's PyTorch form comes from the
registry (``OpSpec.torch``, :mod:`jconv.torch_ports`), timed here.
"""

from __future__ import annotations

import jax
import numpy as np

from experiments.bench.cases import POOLS, TRAIN_STEP, Case
from experiments.bench.jax_calls import call_arrays
import jconv
from jconv.ops import registry
from jconv.torch_ports import separable_port


def import_torch():
    """The ``torch`` module, or None where it is not installed.

    jconv's oneDNN loads first, so that the OpenMP wait policy it sets (threads sleep while
    they wait) is in the environment when PyTorch's OpenMP starts: both columns then run
    under the same policy.
    """
    jconv.backends()
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_skipped(config) -> str | None:
    """Why the run has no ``torch`` column (None: it has one): PyTorch is compared on the
    CPU only, when ``config.torch`` asks and ``import torch`` works."""
    if not config.torch:
        return "config.torch is off"
    if jax.default_backend() != "cpu":
        return f"PyTorch is compared on the CPU only; the backend is {jax.default_backend()}"
    if import_torch() is None:
        return "PyTorch is not installed (pip install '.[bench]')"
    return None


def torch_fn(case: Case, shape_list, torch):
    """A PyTorch function of NHWC-shaped tensors computing the case's op, or None."""
    if case.name == TRAIN_STEP:  # depthwise 3×3 → ReLU → pointwise → ReLU
        return separable_port(torch, shape_list, case.kwargs, torch.nn.functional.relu)
    port = registry.get(case.op).torch
    return port(torch, shape_list, case.kwargs) if port else None


def torch_call(case: Case, shape_list, pass_, arrays, reference, torch):
    """``(call, values)``: a no-argument PyTorch call of the pass (None if there is none)."""
    fn = torch_fn(case, shape_list, torch)
    if fn is None:
        return None, {"skipped": "no PyTorch equivalent"}
    tensors = [torch.from_numpy(np.array(a)) for a in arrays]
    with torch.no_grad():
        out = fn(*tensors)
    if out is None:
        return None, {"skipped": "asymmetric padding"}
    values = {"max_abs_err_vs_lax": float(np.max(np.abs(out.numpy() - np.asarray(reference))))}
    n_grad = 1 if case.op in POOLS else len(tensors)
    if pass_ == "fwd":
        def call():
            with torch.no_grad():
                fn(*tensors)
        return call, values
    leaves = [t.clone().requires_grad_(i < n_grad) for i, t in enumerate(tensors)]
    dy = torch.from_numpy(np.array(call_arrays(case, "lax", pass_, arrays)[-1]))

    def call():
        for t in leaves:
            t.grad = None
        y = fn(*leaves)
        if case.name == TRAIN_STEP:
            y.sum().backward()
            with torch.no_grad():
                for t in leaves[1:]:
                    t.sub_(0.01 * t.grad)
        else:
            y.backward(dy)
    return call, values
