"""The layering of pyproject.toml's ``[tool.importlinter]`` contracts holds: experiments above
jconv, models above nn above ops above onednn above kernels, no experiment importing another,
no import cycle between siblings. And the contracts can fail: a forbidden import is caught."""

import ast
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_the_layering_contracts_hold(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_a_broken_contract_is_reported(tmp_path, monkeypatch, capsys):
    pkg = tmp_path / "toy"
    for name, body in {"__init__.py": "", "ops.py": "from toy import models\n", "models.py": "from toy import ops\n"}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(body)
    config = tmp_path / "layers.toml"
    config.write_text('[tool.importlinter]\nroot_packages = ["toy"]\n\n[[tool.importlinter.contracts]]\n'
                      'name = "models above ops"\ntype = "layers"\nlayers = ["toy.models", "toy.ops"]\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert lint_imports(config_filename=str(config), no_cache=True, no_logo=True) == 1
    assert "models above ops BROKEN" in capsys.readouterr().out


def _long_functions(path: Path, limit: int) -> list[str]:
    """Functions of ``path`` whose body (docstring aside) runs over ``limit`` lines and whose
    docstring gives no reason ("Long by design")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node) or ""
            body = node.body[1:] if doc else node.body
            if body and body[-1].end_lineno - body[0].lineno + 1 > limit and "Long by design" not in doc:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    return found


def test_files_and_functions_stay_readable_in_one_sitting():
    files = sorted((ROOT / "jconv").rglob("*.py")) + sorted((ROOT / "experiments").rglob("*.py"))
    assert len(files) > 50
    assert [str(p.relative_to(ROOT)) for p in files if len(p.read_text().splitlines()) > 420] == []
    assert [f for p in files for f in _long_functions(p, 60)] == []
