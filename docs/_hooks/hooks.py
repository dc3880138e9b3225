"""MkDocs hooks for the jconv site (named in ``mkdocs.yml``).

* Adds the build-time MathML extension (:mod:`mathml`) to the site's Markdown before
  mkdocstrings copies that configuration, so docstrings get it too; it links the
  docstrings' ``:func:`` roles that name a documented object.
* Writes one API reference page per public module (:data:`API_MODULES`), rendering
  every name of the module's ``__all__`` with mkdocstrings, so the reference cannot
  fall behind the code.
* Warns (so ``--strict`` fails the build) on a public function or class without a
  docstring.
* Adds the evidence report as ``report/index.md`` (with its PNGs and ``figures.json``)
  from the report work directory named by ``JCONV_DOCS_REPORT`` (what ``jconv run
  configs/report.py --workdir DIR`` wrote: ``DIR/report/index.md``). Without it the page
  says how to make one.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

_HERE = Path(__file__).resolve().parent
log = logging.getLogger("mkdocs.plugins.jconv")


def _load_mathml():
    spec = importlib.util.spec_from_file_location("jconv_docs_mathml", _HERE / "mathml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@event_priority(100)  # before mkdocstrings reads the Markdown extensions
def on_config(config):
    config.markdown_extensions.append(_load_mathml().MathMLExtension(links=_link_targets()))
    return config


_NO_REPORT = """# The evidence report

This build had no report. Make one and build again with it:

```
jconv run configs/report.py --workdir runs/report       # or configs/report.py:smoke
JCONV_DOCS_REPORT=runs/report bash scripts/docs.sh
```

`bash scripts/docs.sh` makes the smoke report itself when `JCONV_DOCS_REPORT` is unset.
"""


def _report_files(config) -> list[File]:
    workdir = os.environ.get("JCONV_DOCS_REPORT")
    if not workdir:
        return [File.generated(config, "report/index.md", content=_NO_REPORT)]
    report = Path(workdir) / "report"
    index = report / "index.md"
    if not index.is_file():
        raise FileNotFoundError(f"JCONV_DOCS_REPORT={workdir}: no {index} (run "
                                f"`jconv run configs/report.py --workdir {workdir}` first)")
    files = [File.generated(config, "report/index.md", content=index.read_text())]
    files += [File.generated(config, f"report/{path.name}", abs_src_path=str(path))
              for path in sorted(report.iterdir())  # PNGs and figures.json
              if path.is_file() and path.name not in ("index.md", "index.html")]
    return files


API_MODULES = {
    "jconv": "Every convolution variant and pooling op, and the registry that holds them.",
    "jconv.cost": "Parameters, multiply-adds, FLOPs and bytes of every op.",
    "jconv.nn": "Thin `flax.nnx` layers over the ops, and the conv variants.",
    "jconv.models": "AlexNet, GoogLeNet and MobileNet v1 as the papers' tables.",
    "jconv.train": "Training any model on any dataset, on every local device.",
    "jconv.data": "Datasets that never download, and how they are opened.",
    "jconv.data.pipeline": "Streaming a pair of grain sources, per process, resumable.",
    "jconv.kernels": "Einsum kernels with the `lax.conv_general_dilated` signature.",
    "jconv.platform": "Where kernels come from (XLA, oneDNN through XLA's FFI) and whether each runs here.",
}
"""Module -> one-line summary, in the order of the reference's navigation."""


def _link_targets() -> dict[str, str]:
    """Name a docstring may write -> the documented object's anchor: each public name,
    and the path where the object is defined (``jconv.ops.registry.OpSpec`` ->
    ``jconv.OpSpec``). A name that is also a module (``jconv.nn.variants``) is not linked."""
    links: dict[str, str] = {}
    for module in API_MODULES:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            if _shadows_submodule(module, name):
                continue
            anchor, obj = f"{module}.{name}", getattr(mod, name)
            links.setdefault(anchor, anchor)
            if callable(obj) and hasattr(obj, "__qualname__") and "<" not in obj.__qualname__:
                links.setdefault(f"{obj.__module__}.{obj.__qualname__}", anchor)
    return links


def _shadows_submodule(module: str, name: str) -> bool:
    """Whether ``module.name`` is also a submodule (``jconv.nn.variants``, a function and a
    module): griffe then sees the module, so the object is rendered under its own path."""
    try:
        return importlib.util.find_spec(f"{module}.{name}") is not None
    except ModuleNotFoundError:
        return False


def undocumented(module: str) -> list[str]:
    """The functions and classes of ``module.__all__`` without a docstring of their own."""
    mod = importlib.import_module(module)
    return [f"{module}.{name}" for name in mod.__all__
            if (inspect.isclass(obj := getattr(mod, name)) or callable(obj))
            and not (obj.__doc__ or "").strip()]


def api_page(module: str) -> str:
    """The Markdown of ``module``'s reference page: every name of its ``__all__``."""
    mod = importlib.import_module(module)
    for name in undocumented(module):
        log.warning(f"{name} is public (in __all__) but has no docstring")
    names = [n for n in mod.__all__ if not _shadows_submodule(module, n)]
    members = "\n".join(f"        - {name}" for name in names)
    page = (f"# `{module}`\n\n{API_MODULES[module]}\n\n::: {module}\n    options:\n"
            f"      members:\n{members}\n")
    for name in mod.__all__:
        if name not in names:  # an anchor under the public name, then the object itself
            obj = getattr(mod, name)
            page += (f"\n[](){{#{module}.{name}}}\n\n::: {obj.__module__}.{obj.__qualname__}\n"
                     f"    options:\n      show_root_heading: true\n"
                     f"      show_root_full_path: false\n")
    return page


def on_files(files, config):
    for module in API_MODULES:
        files.append(File.generated(config, f"api/{module}.md", content=api_page(module)))
    for file in _report_files(config):
        files.append(file)
    return files
