"""``examples/custom_variant.py``: a variant added in one file gets everything jconv has."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # the example end to end, in another process
def test_custom_variant_runs_end_to_end():
    result = subprocess.run([sys.executable, "examples/custom_variant.py"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    out = result.stdout
    assert "cost: 154,140,672 FLOPs, XLA 154,140,672" in out  # 2*8*28*28*96*128
    assert out.count("gradients checked; auto runs") == 2
    assert "layer: (2, 14, 14, 128) 12416 params" in out  # 96*128 + 128
    for model in ("alexnet", "alexnet_single_tower", "googlenet", "mobilenet_v1"):
        assert f"{model}: logits (1, 1000);" in out
    assert out.count("shift_conv") >= 6
    assert out.count("| shift_conv | variant 'shift' for GoogLeNet 3a") == 2  # fwd, fwd_bwd
