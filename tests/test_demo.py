"""The demo (``python -m jconv demo``): its rows follow the hand formulas, and it runs."""

import io
import subprocess
import sys

import pytest

from jconv import cli, demo, measure

K1, K2, SIZE = 2, 4, 32


@pytest.fixture(scope="module")
def run_output():
    out = io.StringIO()
    rows = demo.run(k1=K1, k2=K2, size=SIZE, seed=0, repeats=1, file=out)
    return rows, out.getvalue()


@pytest.fixture(scope="module")
def rows(run_output):
    return {r["variant"]: r for r in run_output[0]}


def test_types_output_maps(rows):
    assert rows["Type 1"]["maps"] == K1 * K2
    assert rows["Type 1"]["shape"] == (1, SIZE, SIZE, K1 * K2)
    assert rows["Type 2.1"]["maps"] == K2
    assert rows["Type 2.2"]["maps"] == K2
    assert rows["Type 2.1"]["shape"] == rows["Type 2.2"]["shape"] == (1, SIZE, SIZE, K2)


def test_types_params_follow_hand_formulas(rows):
    assert rows["Type 1"]["params"] == K2 * 5 * 5 + K2
    assert rows["Type 2.1"]["params"] == K2 * 5 * 5 + K2
    assert rows["Type 2.2"]["params"] == K1 * K2 * 5 * 5 + K2
    assert rows["Type 2.2"]["weights"] == K1 * rows["Type 2.1"]["weights"]


def test_other_variants_params(rows):
    assert rows["grouped, 2 groups"]["params"] == (K1 // 2) * K2 * 5 * 5 + K2
    assert rows["pointwise 1x1"]["params"] == K1 * K2 + K2
    assert rows["separable, dw+1x1"]["params"] == K1 * 5 * 5 + K1 * K2 + K2
    assert rows["spatial sep 5x1,1x5"]["params"] == 5 * K1 * K2 + 5 * K2 * K2 + K2
    valid = SIZE - 5 + 1
    assert rows["local, VALID"]["params"] == valid * valid * (5 * 5 * K1 * K2 + K2)
    assert rows["max pool 3x3/2"]["params"] == 0
    assert rows["channel max pool 2"]["maps"] == K1 // 2
    assert rows["transpose, stride 2"]["shape"] == (1, 2 * SIZE, 2 * SIZE, K2)


def test_flops_positive_where_reported(rows):
    for row in rows.values():
        assert row["flops"] is None or row["flops"] > 0, row
        assert row["seconds"] > 0, row
    assert any(row["flops"] is not None for row in rows.values())


def test_table_and_summary_printed(run_output):
    row_list, text = run_output
    for row in row_list:
        assert row["variant"] in text
    assert text.rstrip().splitlines()[-1].startswith("Type 1 vs 2.1 vs 2.2")


class _Compiled:
    def __init__(self, cost):
        self.cost = cost

    def cost_analysis(self):
        if isinstance(self.cost, Exception):
            raise self.cost
        return self.cost


def test_xla_flops_shapes_of_cost_analysis():
    assert measure.xla_flops(_Compiled({"flops": 10.0})) == 10
    assert measure.xla_flops(_Compiled([{"flops": 10.0}, {"flops": 5.0}])) == 15
    assert measure.xla_flops(_Compiled({"bytes accessed": 4.0})) is None
    assert measure.xla_flops(_Compiled(None)) is None
    assert measure.xla_flops(_Compiled(NotImplementedError())) is None


def test_cli_rejects_bad_size():
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--size", "0"])
    assert exc.value.code == 2


@pytest.mark.slow  # another process: python -m jconv demo
def test_python_m_jconv_demo_runs():
    proc = subprocess.run([sys.executable, "-m", "jconv", "demo", "--size", "32"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Type 2.2" in proc.stdout
