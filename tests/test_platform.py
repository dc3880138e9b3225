"""jconv.platform.keep_freed_memory: large blocks freed by any thread are reused, not faulted in again."""

import subprocess
import sys

import pytest

CODE = """
import ctypes, resource, sys, threading
import jconv.platform
if sys.argv[1] == "keep":
    assert jconv.platform.keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
faults = []
def work():
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        p = libc.malloc(200 << 20)
        ctypes.memset(p, 1, 200 << 20)
        libc.free(p)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
for _ in range(2):  # two threads at once, twice: as XLA's pool runs calls
    threads = [threading.Thread(target=work) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
print(*faults)
"""


def _faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [int(v) for v in out.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_blocks_are_reused_by_every_thread():
    pages = (200 << 20) // 4096
    kept, default = _faults("keep"), _faults("default")
    # glibc's default maps a 200 MB block afresh each time: every page faults in again.
    assert min(default[4:]) > pages // 2, default
    # Kept: after the first round, the threads' blocks come back from the one heap, faulted once.
    assert max(kept[6:]) < pages // 100, kept
