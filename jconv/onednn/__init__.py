"""oneDNN inside XLA programs: convolutions, pooling and LRN as JAX primitives over FFI calls.

One package for everything oneDNN, each module one concern:

* :mod:`.build`: compiles ``csrc/`` into ``_build/libjconv_onednn.so``
  (``python -m jconv.onednn.build``; ``setup.py`` runs the same compile at ``pip install``).
* :mod:`.library`: the loader. Loads the extension once per process, registers every FFI
  target, says whether it runs here (:func:`status`), and :func:`disabled` /
  ``JCONV_DISABLE_ONEDNN=1`` turn it off.
* :mod:`.primitive`: the factory of every pass's primitive (abstract evaluation, FFI
  lowering, batch split over several devices, vmap, derivatives).
* :mod:`.convolution`: the three conv passes and :func:`conv`, :func:`conv_transpose`.
* :mod:`.pooling`: max and average pooling and LRN.
* :mod:`.matmul`: a linear layer's matmuls (:class:`jconv.nn.Linear`).

A new pass is its C++ in ``csrc/``, its symbol in :data:`.library.TARGETS`, and one
:func:`.primitive.define` beside its siblings. ``jconv.backends()`` reports this backend
beside ``lax``.

>>> from jconv import onednn
>>> onednn.status().name, onednn.unavailable("gpu", "float32")
('onednn', 'oneDNN runs on the CPU, and this call runs on gpu')
"""

from jconv.onednn.convolution import (DTYPES, cache_size, conv, conv_transpose,
                                      set_cache_capacity, unavailable)
from jconv.onednn.library import (DISABLE_ENV, Backend, ImplUnavailableWarning, disabled, status,
                                  turned_off)

__all__ = ["DISABLE_ENV", "DTYPES", "Backend", "ImplUnavailableWarning", "cache_size", "conv",
           "conv_transpose", "disabled", "set_cache_capacity", "status", "turned_off",
           "unavailable"]
