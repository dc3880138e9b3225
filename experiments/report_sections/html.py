"""The report's Markdown subset to one self-contained HTML page (no dependency).

The subset is what the report writes: ``#``-headings, paragraphs, ``-`` lists, pipe
tables, fenced code blocks, and inline ``**bold**``, ``*italic*``, ```code```, ``[text](url)`` and
``![alt](file.png)``. Images are embedded as ``data:image/png;base64`` URIs, so the page
needs no file beside it.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 70rem;
       margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #1b1b1b; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .85rem; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .2rem .5rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; background: #f6f6f6; }
pre { padding: .6rem; overflow-x: auto; font-size: .85rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def inline(text: str, base: Path) -> str:
    """Escapes ``text`` and renders its inline markup; images become data URIs."""
    codes: list[str] = []

    def stash(m):  # code spans are literal: set aside before any other markup
        codes.append(f"<code>{html.escape(m[1])}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = html.escape(_CODE.sub(stash, text), quote=False)
    text = _IMAGE.sub(lambda m: f'<img alt="{m[1]}" src="{_data_uri(base / m[2])}">', text)
    text = _LINK.sub(lambda m: f'<a href="{m[2]}">{m[1]}</a>', text)
    text = _ITALIC.sub(r"<em>\1</em>", _BOLD.sub(r"<strong>\1</strong>", text))
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m[1])], text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def to_html(markdown: str, title: str, base: Path) -> str:
    """The page for ``markdown`` (images relative to ``base``), UTF-8 with inline CSS."""
    lines = markdown.splitlines()
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            body.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
        elif m := re.match(r"(#{1,6}) (.*)", line):
            level = len(m[1])
            anchor = re.sub(r"[^a-z0-9]+", "-", m[2].lower()).strip("-")
            body.append(f'<h{level} id="{anchor}">{inline(m[2], base)}</h{level}>')
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            header, rest = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-:")
                                                                   for c in r)]
            table = ["<table>", "<thead><tr>" + "".join(f"<th>{inline(c, base)}</th>"
                                                        for c in header) + "</tr></thead>",
                     "<tbody>"]
            table += ["<tr>" + "".join(f"<td>{inline(c, base)}</td>" for c in r) + "</tr>"
                      for r in rest]
            body.append("\n".join(table + ["</tbody></table>"]))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith(("- ", "  ")) and lines[i].strip():
                if lines[i].startswith("- "):
                    items.append(lines[i][2:])
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            body.append("<ul>" + "".join(f"<li>{inline(t, base)}</li>" for t in items) + "</ul>")
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(
                    ("#", "|", "- ", "```")):
                paragraph.append(lines[i])
                i += 1
            body.append(f"<p>{inline(' '.join(paragraph), base)}</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
