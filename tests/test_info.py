"""``jconv info``: every fact an issue report needs, each named, and exit status 0."""

import json
import subprocess
import sys

import pytest

import jconv
from jconv import cli, info

NAMES = ["jconv", "jax", "jaxlib", "flax", "optax", "grain", "oneDNN", "devices:", "cpu:0",
         "backends:", "lax", "onednn", "AVX2", "AVX-512", "AVX512-BF16", "AMX", "openmp:",
         "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "threads:"]


def test_info_names_every_item_and_exits_0(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out, (name, out)
    for name, backend in jconv.backends().items():
        assert backend.reason in out, name


def test_info_json_matches_the_backends_and_versions(capsys):
    assert cli.main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert set(facts["versions"]) >= {"jconv", "jax", "jaxlib", "flax", "optax", "grain", "oneDNN"}
    assert facts["versions"]["jax"] == __import__("jax").__version__
    assert {name: b["reason"] for name, b in facts["backends"].items()} == {
        name: b.reason for name, b in jconv.backends().items()}
    assert set(facts["cpu"]["features"]) == set(info.FEATURES)
    assert facts["devices"]["devices"]


def test_cpu_features_from_the_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: A CPU\nflags\t\t: fpu sse avx avx2 amx_tile\n"
                       "\nprocessor\t: 1\nmodel name\t: A CPU\nflags\t\t: fpu\n")
    found = info.cpu(cpuinfo)
    assert found["model"] == "A CPU"
    assert found["features"] == {"AVX2": True, "AVX-512": False, "AVX512-BF16": False,
                                 "AMX": False}  # AMX needs amx_bf16 as well as the tiles
    assert set(info.cpu(tmp_path / "missing")["features"].values()) == {None}


def test_without_onednn_info_says_why_and_that_jconv_sets_no_openmp_variable(monkeypatch, capsys):
    monkeypatch.setenv("JCONV_DISABLE_ONEDNN", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "onednn  unavailable: disabled by JCONV_DISABLE_ONEDNN=1" in out
    assert "jconv sets no OpenMP variable" in out
    assert "threads: 3 (OMP_NUM_THREADS)" in out and "OMP_NUM_THREADS=3" in out


@pytest.mark.slow  # a fresh interpreter: the command as a user runs it
def test_python_m_jconv_info():
    proc = subprocess.run([sys.executable, "-m", "jconv", "info"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in NAMES:
        assert name in proc.stdout, (name, proc.stdout)
