"""The documentation site builds strictly, covers the public API, and works offline.

Builds the site once (``mkdocs build --strict``) with a small evidence report made by the
report's own HTML writer, then checks the reference's anchors, every internal link and
resource, and (with ``/usr/bin/chromium``) what a browser shows: no console errors, maths
as MathML, and wide tables scrolling in their own box at 1280 and 800 px.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("mkdocs", reason="docs extra not installed (pip install -e '.[docs]')")
pytest.importorskip("mkdocstrings_handlers.python", reason="docs extra not installed")
pytest.importorskip("latex2mathml", reason="docs extra not installed")

from experiments.report_sections import html as report_html  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
API_MODULES = ("jconv", "jconv.cost", "jconv.nn", "jconv.models", "jconv.train", "jconv.data",
               "jconv.data.pipeline", "jconv.kernels", "jconv.platform")
WIDTHS = (1280, 800)

# A report in the evidence report's Markdown subset, with a table far wider than 800 px.
REPORT = """# A small report

Made by the test. Every figure is in [figures.json](figures.json).

## 1. A wide table

| variant | {header} |
|---|{rule}|
| standard | {row} |
| per_map | {row} |

![a figure](figure.png)
"""


def _write_report(workdir: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = workdir / "report"
    report.mkdir(parents=True)
    columns = 24
    markdown = REPORT.format(header=" | ".join(f"width {i} (MACs per image)"
                                               for i in range(columns)),
                             rule="|".join("---:" for _ in range(columns)),
                             row=" | ".join("1,234,567,890" for _ in range(columns)))
    (report / "index.md").write_text(markdown, encoding="utf-8")
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    fig.savefig(report / "figure.png")
    plt.close(fig)
    (report / "figures.json").write_text("{}")
    (report / "index.html").write_text(report_html.to_html(markdown, "A small report", report),
                                       encoding="utf-8")
    return report


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    report = _write_report(tmp / "report_run")
    site = tmp / "site"
    env = {**os.environ, "JCONV_DOCS_REPORT": str(report.parent), "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return site, report


class _Refs(HTMLParser):
    """Every id on a page, and every href/src with the tag that holds it."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key) is not None:
                self.refs.append((tag, key, attrs[key]))


def _parse(path: Path) -> _Refs:
    parser = _Refs()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.slow  # the docs build
def test_every_public_name_has_an_anchor(built):
    site, _ = built
    missing = []
    for module in API_MODULES:
        ids = _parse(site / "api" / f"{module}.html").ids
        missing += [f"{module}.{name}" for name in importlib.import_module(module).__all__
                    if f"{module}.{name}" not in ids]
    assert not missing, f"no anchor in the API reference for: {missing}"


@pytest.mark.slow  # the docs build
def test_internal_links_and_resources_resolve(built):
    site, _ = built
    pages = {path: _parse(path) for path in site.rglob("*.html")}
    broken, external = [], []
    for page, parsed in pages.items():
        for tag, key, ref in parsed.refs:
            parts = urlsplit(ref)
            if parts.scheme in ("http", "https") or ref.startswith("//"):
                if tag in ("script", "link", "img", "iframe", "source"):  # loaded, not followed
                    external.append(f"{page.relative_to(site)}: <{tag} {key}={ref}>")
                continue
            if parts.scheme in ("mailto", "data", "javascript") or not ref:
                continue
            if not parts.path:
                target = page
            elif parts.path.startswith("/"):  # 404.html: served from the site root
                target = site / unquote(parts.path).lstrip("/")
            else:
                target = (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {ref}")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)}: {ref} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken)
    assert not external, "resources loaded from the network:\n" + "\n".join(external)


@pytest.mark.slow  # the docs build
def test_maths_is_mathml_in_the_html(built):
    site, _ = built
    page = (site / "api" / "jconv.html").read_text(encoding="utf-8")
    assert page.count("<math") >= 10
    assert "\\sum" not in page and ".. math::" not in page


class _Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self, profile: Path):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # The shell puts the pipe ends on fds 3 and 4 (no preexec_fn: that would fork a
        # process that may hold JAX's threads).
        self._process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w}', str(CHROMIUM),
             "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(to_child_r, from_child_w), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._messages: queue.Queue = queue.Queue()
        self._events: list[dict] = []
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.call("Target.attachToTarget", targetId=target,
                                      flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable", session=True)
        except BaseException:
            self.close()
            raise

    def _read(self):
        buffer = b""
        while chunk := os.read(self._from_child, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._messages.put(json.loads(message))

    def call(self, method, session=False, timeout=60, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._messages.get(timeout=max(deadline - time.monotonic(), 0.01))
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._events.append(reply)

    def _drain(self, seconds):
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._events.append(self._messages.get(timeout=left))
            except queue.Empty:
                break

    def open(self, url: str, width: int) -> list[str]:
        """Loads ``url`` in a ``width`` px viewport; returns the console errors it logged."""
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=900,
                  deviceScaleFactor=1, mobile=False)
        self._events.clear()
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            assert time.monotonic() < deadline, f"{url} did not load"
            self._drain(0.1)
        self._drain(0.5)  # scripts run after load
        errors = []
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(json.dumps(params["args"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(f"{params['entry'].get('text')} {params['entry'].get('url', '')}")
        return errors

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"]["value"]

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (OSError, RuntimeError, queue.Empty):  # already gone
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_child)


# What the page shows: maths, raw TeX left, the page's own horizontal overflow, and for each
# table the box that scrolls it sideways (itself or an ancestor, inside the viewport).
PAGE_FACTS = """(() => {
  const view = document.documentElement.clientWidth;
  const inView = (e) => { const r = e.getBoundingClientRect();
                          return r.left >= -1 && r.right <= view + 1; };
  const scroller = (el) => {  // the nearest box that scrolls sideways and is itself in view
    for (let e = el; e && e !== document.body; e = e.parentElement) {
      const o = getComputedStyle(e).overflowX;
      if ((o === 'auto' || o === 'scroll') && inView(e)) return e;
    }
    return null;
  };
  return {
    maths: document.querySelectorAll('math').length,
    rawTex: /\\\\(sum|frac|mathrm)|\\.\\. math::/.test(document.body.innerText),
    pageOverflow: document.documentElement.scrollWidth - view,
    tables: [...document.querySelectorAll('table')].map((t) => {
      const box = scroller(t);
      return {scrolls: box !== null, wide: box !== null && box.scrollWidth > box.clientWidth,
              fits: box !== null || inView(t)};
    }),
  };
})()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium on this machine (apt-get install chromium to run "
                    "the headless-browser checks)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    chromium = _Chromium(profile)
    yield chromium
    chromium.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow  # the docs build and Chromium
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page,maths", [("index.html", 1), ("api/jconv.html", 10),
                                        ("guides/types.html", 3), ("report/index.html", 0)])
def test_pages_open_without_errors_in_chromium(built, browser, page, maths, width):
    site, _ = built
    errors = browser.open((site / page).as_uri(), width)
    assert not errors, f"{page} at {width}px logged errors: {errors}"
    facts = browser.evaluate(PAGE_FACTS)
    assert facts["maths"] >= maths, facts
    assert not facts["rawTex"], f"{page}: raw TeX left in the text"
    assert facts["pageOverflow"] <= 1, f"{page} scrolls sideways at {width}px: {facts}"
    assert all(t["fits"] for t in facts["tables"]), f"{page} at {width}px: {facts['tables']}"
    if page == "report/index.html":
        assert facts["tables"] and all(t["scrolls"] for t in facts["tables"])
        assert any(t["wide"] for t in facts["tables"]), "the wide table should need to scroll"


@pytest.mark.slow  # the docs build and Chromium
@pytest.mark.parametrize("width", WIDTHS)
def test_report_html_tables_scroll_in_their_own_box(built, browser, width):
    _, report = built
    errors = browser.open((report / "index.html").as_uri(), width)
    assert not errors, errors
    facts = browser.evaluate(PAGE_FACTS)
    assert facts["pageOverflow"] <= 1, facts
    assert facts["tables"] and all(t["scrolls"] and t["fits"] for t in facts["tables"]), facts
    assert any(t["wide"] for t in facts["tables"])


def test_a_public_function_without_a_docstring_fails_the_build(monkeypatch):
    import importlib.util
    import sys
    import types

    spec = importlib.util.spec_from_file_location("jconv_docs_hooks", ROOT / "docs" / "_hooks" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    assert [name for module in API_MODULES for name in hooks.undocumented(module)] == []
    fake = types.ModuleType("jconv_docs_fake")
    fake.__all__ = ["documented", "bare"]
    exec("def documented():\n    'Has one.'\n\ndef bare():\n    pass\n", fake.__dict__)
    monkeypatch.setitem(sys.modules, "jconv_docs_fake", fake)
    assert hooks.undocumented("jconv_docs_fake") == ["jconv_docs_fake.bare"]
