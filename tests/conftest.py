"""Suite-wide settings: strict numerics and reproducible hypothesis sweeps."""

import os

import jax
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("JCONV_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,  # same examples every run: CI failures reproduce
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("default")
