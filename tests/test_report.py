"""The evidence report builds in smoke mode, its figures are the cost model's, its files sound."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from jconv import cost, runner
from jconv.summary import summarize
from tests.shared import built_once

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "report.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.slow  # every test reads the evidence report, built end to end


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    def build(workdir):
        runner.run(f"{CONFIG}:smoke", workdir=workdir)
        return workdir / "report"

    return built_once(tmp_path_factory, "report", build)  # once per test run


@pytest.fixture(scope="module")
def figures(report):
    return json.loads((report / "figures.json").read_text())


def test_writes_the_report(report):
    for name in ("index.md", "index.html", "figures.json"):
        assert (report / name).stat().st_size > 0
    markdown = (report / "index.md").read_text(encoding="utf-8")
    for number in range(1, 11):
        assert re.search(rf"^## {number}\. ", markdown, re.M), f"section {number} missing"


def test_type_figures_equal_the_cost_model(figures):
    config, _, _ = runner.load(f"{CONFIG}:smoke")
    s, k = config.evidence_size, config.kernel2
    x = (1, s, s, config.k1)
    expected = {"per_map_conv": cost.per_map_conv(x, (k, k, config.k2)),
                "shared_filter_conv": cost.shared_filter_conv(x, (k, k, config.k2)),
                "conv": cost.conv(x, (k, k, config.k1, config.k2))}
    for op, c in expected.items():
        got = figures[f"types/{op}"]
        assert (got["maps"], got["params"], got["flops"]) == (c.output_shape[-1], c.params,
                                                               c.flops)
    nnx = figures["nnx"]
    assert nnx["params"] == expected["conv"].params
    assert nnx["max_abs_vs_type2_2"] < 1e-4 < nnx["max_abs_vs_type2_1"]
    assert nnx["fit_residual_type2_2"] < 1e-4
    assert min(nnx["fit_residual_type1"], nnx["fit_residual_type2_1"]) > 0.1


def test_network_figures_equal_the_summary(figures):
    rows, total = summarize("alexnet")
    assert figures["alexnet"]["total"] == total
    assert figures["alexnet"]["grouped"] == ["conv2", "conv4", "conv5"]
    assert figures["alexnet"]["layers"]["conv2"]["kernel"] == "5x5x48x256"
    rows, total = summarize("googlenet")
    google = figures["googlenet"]
    assert google["total"] == total
    macs_3a = sum(r["macs"] for r in rows if r["name"].startswith("inception_3a/"))
    assert google["rows"]["3a"]["macs"] == macs_3a
    assert google["rows"]["conv1"]["params"] == 7 * 7 * 3 * 64
    assert google["rows"]["conv1"]["flags"] == ["params", "ops"]  # the printed 2.7K, 34M
    assert google["rows"]["3b"]["flags"] == []
    for name, saving in figures["inception_savings"].items():
        reduced = sum(r["macs"] for r in rows if r["name"].startswith(f"inception_{name}/"))
        assert saving["reduced"]["macs"] == reduced
        assert saving["saving_macs"] > 1


def test_evidence_figures(figures):
    one = figures["one_by_one"]
    assert one["type1_ratio_spread"] < 1e-5 and one["type1_max_abs_vs_scaled"] < 1e-6
    assert one["type2_2_min_residual_vs_multiple"] > 0.1
    assert one["nin_max_abs_vs_mlp"] < 1e-4
    mb = one["mobilenet"]
    assert mb["cost_model"] == pytest.approx(mb["formula"], rel=1e-12)
    assert mb["formula"] == pytest.approx(1 / mb["N"] + 1 / mb["Dk"] ** 2)
    pool = figures["pooling"]
    assert np.count_nonzero(pool["per_map_changed"]) == 1 and pool["per_map_changed"][2] > 0
    assert np.count_nonzero(pool["maxout_changed"]) == 1 and pool["maxout_changed"][1] > 0
    depth = figures["depth_filter"]
    assert depth["shapes"]["VALID stride 1"] == [1, 1335, 39, 310, 1]
    assert depth["full_output_shape"] == [1, 1335, 39, 310, 1]
    assert depth["params"] == 3 * 4 * 5 + 1
    assert set(depth["order_max_abs_exact"].values()) == {0.0}
    assert max(depth["order_max_abs_gaussian"].values()) < 1e-3
    slopes = figures["quadratic_slopes"]
    assert slopes["uniform/type2_2"]["flops"] > 1.5 > slopes["k2_only/type2_2"]["flops"]


def _image_links(html_or_md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", html_or_md)


def test_figures_are_valid_pngs(report):
    import matplotlib.image

    names = _image_links((report / "index.md").read_text(encoding="utf-8"))
    assert len(names) >= 5
    for name in names:
        path = report / name
        assert path.read_bytes()[:8] == PNG_MAGIC, name
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and min(image.shape[:2]) > 50, name


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.title = [], ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.refs += [attrs[a] for a in ("href", "src") if a in attrs]
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False


def test_html_is_self_contained(report):
    page = (report / "index.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    assert parser.title.startswith("How exactly do convolution layers work?")
    assert '<meta charset="utf-8">' in page
    images = [r for r in parser.refs if r.startswith("data:image/png;base64,")]
    assert len(images) == len(_image_links((report / "index.md").read_text(encoding="utf-8")))
    for ref in parser.refs:
        if ref.startswith(("data:", "http://", "https://", "#")):
            continue
        assert (report / ref.split("#")[0]).exists(), f"broken relative link {ref!r}"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium on this machine "
                    "(apt-get install chromium to run the headless-browser check)")
def test_html_opens_in_headless_chromium(report, tmp_path):
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
               (report / "index.html").as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "<title>How exactly do convolution layers work?" in dom
    assert "GoogLeNet" in dom and dom.count("<img") >= 5
    for error in ("This page isn", "ERR_FILE_NOT_FOUND", "ERR_ACCESS_DENIED"):
        assert error not in dom
