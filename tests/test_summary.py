"""``jconv summary``: per-layer params and MACs from the model itself vs the papers' shapes."""

import json
import subprocess
import sys

import jax
import pytest
from flax import nnx

from jconv import summary
from jconv.runner import ConfigError

# GoogLeNet Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), grid size.
INCEPTION = [
    (28, 192, (64, 96, 128, 16, 32, 32)), (28, 256, (128, 128, 192, 32, 96, 64)),
    (14, 480, (192, 96, 208, 16, 48, 64)), (14, 512, (160, 112, 224, 24, 64, 64)),
    (14, 512, (128, 128, 256, 24, 64, 64)), (14, 512, (112, 144, 288, 32, 64, 64)),
    (14, 528, (256, 160, 320, 32, 128, 128)), (7, 832, (256, 160, 320, 32, 128, 128)),
    (7, 832, (384, 192, 384, 48, 128, 128)),
]


def googlenet_by_hand():
    """(params, MACs) of GoogLeNet from the paper's table, written out as arithmetic."""
    params = 7 * 7 * 3 * 64 + 64 + 64 * 64 + 64 + 3 * 3 * 64 * 192 + 192
    macs = 112 * 112 * 64 * 7 * 7 * 3 + 56 * 56 * 64 * 64 + 56 * 56 * 192 * 3 * 3 * 64
    for h, c, (a, b_r, b, d_r, d, f) in INCEPTION:
        params += (c * a + a) + (c * b_r + b_r) + (9 * b_r * b + b) + (c * d_r + d_r) \
            + (25 * d_r * d + d) + (c * f + f)
        macs += h * h * (c * a + c * b_r + 9 * b_r * b + c * d_r + 25 * d_r * d + c * f)
    params += 1024 * 1000 + 1000
    macs += 1024 * 1000
    return params, macs


def alexnet_by_hand():
    convs = [  # (output grid, kernel h*w*depth, filters)
        (55, 11 * 11 * 3, 96), (27, 5 * 5 * 48, 256), (13, 3 * 3 * 256, 384),
        (13, 3 * 3 * 192, 384), (13, 3 * 3 * 192, 256)]
    fcs = [(6 * 6 * 256, 4096), (4096, 4096), (4096, 1000)]
    params = sum(k * f + f for _, k, f in convs) + sum(i * o + o for i, o in fcs)
    macs = sum(g * g * k * f for g, k, f in convs) + sum(i * o for i, o in fcs)
    return params, macs


def mobilenet_by_hand():
    """MobileNet v1 1.0-224 (Table 1), BatchNorm scale and offset counted as params."""
    blocks = [(32, 64, 112), (64, 128, 56), (128, 128, 56), (128, 256, 28), (256, 256, 28),
              (256, 512, 14)] + [(512, 512, 14)] * 5 + [(512, 1024, 7), (1024, 1024, 7)]
    params = 3 * 3 * 3 * 32 + 2 * 32
    macs = 112 * 112 * 32 * 27
    for c, k, out_grid in blocks:
        params += 9 * c + 2 * c + c * k + 2 * k
        macs += out_grid * out_grid * (9 * c + c * k)
    params += 1024 * 1000 + 1000
    macs += 1024 * 1000
    return params, macs


@pytest.mark.parametrize("model, by_hand", [("alexnet", alexnet_by_hand),
                                            ("googlenet", googlenet_by_hand),
                                            ("mobilenet_v1", mobilenet_by_hand)])
def test_totals_match_the_papers_shapes(model, by_hand):
    _, total = summary.summarize(model)
    assert (total["params"], total["macs"]) == by_hand()


def test_alexnet_rows_show_type_2_2_with_two_groups():
    rows = {r["name"]: r for r in summary.summarize("alexnet")[0]}
    assert (rows["conv2"]["kernel"], rows["conv2"]["groups"]) == ("5x5x48x256", 2)
    assert [rows[n]["groups"] for n in ("conv1", "conv3", "conv4", "conv5")] == [1, 1, 2, 2]
    assert rows["conv2"]["params"] == 5 * 5 * 48 * 256 + 256


@pytest.mark.parametrize("model, overrides", [
    ("googlenet", dict(width=0.5, input_size=96, num_classes=10)),
    ("alexnet", dict(variant="per_map", width=0.25, input_size=99)),
    ("mobilenet_v1", dict(variant="shared_filter", width=0.5, input_size=64)),
])
def test_params_total_equals_the_models_own_count(model, overrides):
    _, total = summary.summarize(model, **overrides)
    settings = summary.config(model)
    settings.update(overrides)
    params = nnx.state(summary.build_abstract(settings), nnx.Param)
    assert total["params"] == sum(p.size for p in jax.tree.leaves(params))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "jconv", "summary", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # another process: python -m jconv summary
def test_cli_json_has_total():
    done = _cli("alexnet", "--config.width=0.5", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data["total"]) == {"params", "macs"}
    assert data["total"]["params"] == sum(r["params"] for r in data["layers"])
    assert data["config"]["width"] == 0.5


@pytest.mark.slow  # another process: python -m jconv summary
def test_cli_table_and_errors():
    done = _cli("googlenet")
    assert done.returncode == 0 and "inception_3a/branch_5x5" in done.stdout
    assert "5x5x16x32" in done.stdout  # the 5x5 branch is 5x5, not 3x3
    bad = _cli("googlenet", "--config.widht=2")
    assert bad.returncode == 2 and "no key 'widht'" in bad.stderr
    with pytest.raises(ConfigError, match="known models"):
        summary.main("resnet", [], False)
