"""Maths to MathML at build time: the pages load no script and reach no network.

A Python-Markdown extension, added to the site's Markdown (and so to mkdocstrings'
rendering of docstrings) by :mod:`hooks`. It renders with ``latex2mathml``:

* ``.. math:: EXPR`` (reStructuredText, as the docstrings write it): the expression
  is the rest of the line plus every following line indented deeper than the
  directive, and becomes a display ``<math>`` block;
* ``$$ EXPR $$`` on lines of their own: a display block;
* ``\\( EXPR \\)`` and ``:math:`EXPR``` inline.

Sphinx cross-reference roles (``:func:`name```, ...) become inline code, linked (through
mkdocs-autorefs) where the name is one the site documents (the extension's ``links``).

Bare doctests (``>>>`` blocks outside an Examples section) are fenced as ``pycon``
code first. Fenced code is stashed before the maths is converted, and inline code
spans are left alone.
"""

from __future__ import annotations

import re

from latex2mathml.converter import convert
from markdown import Extension
from markdown.preprocessors import Preprocessor

_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*(.*)$")
_INLINE = re.compile(r"\\\((.+?)\\\)")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")
_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def to_mathml(latex: str, display: bool) -> str:
    """``latex`` as one ``<math>`` element (``display="block"`` or ``"inline"``)."""
    return convert(" ".join(latex.split()), display="block" if display else "inline")


class MathPreprocessor(Preprocessor):
    def __init__(self, md, links: dict[str, str]):
        super().__init__(md)
        self.links = links

    def _role(self, m) -> str:
        target, shown = m[2], (m[2].rsplit(".", 1)[-1] if m[1] else m[2])
        return f"[`{shown}`][{self.links[target]}]" if target in self.links else f"`{shown}`"

    def _block(self, latex: str, indent: str) -> list[str]:
        placeholder = self.md.htmlStash.store(to_mathml(latex, display=True))
        return ["", indent + placeholder, ""]

    def _inline(self, line: str) -> str:
        line = _MATH_ROLE.sub(lambda m: self._stash_inline(m[1]), line)
        line = _ROLE.sub(self._role, line)  # Sphinx roles in docstrings
        out, last = [], 0
        for span in _CODE_SPAN.finditer(line):  # maths inside `code` stays literal
            out.append(self._inline_text(line[last:span.start()]))
            out.append(span.group(0))
            last = span.end()
        out.append(self._inline_text(line[last:]))
        return "".join(out)

    def _inline_text(self, text: str) -> str:
        return _INLINE.sub(lambda m: self._stash_inline(m[1]), text)

    def _stash_inline(self, latex: str) -> str:
        return self.md.htmlStash.store(to_mathml(latex, display=False))

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            if m := _DIRECTIVE.match(line):  # the body: blank or deeper-indented lines
                indent, j = m[1], i + 1
                while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > len(m[1])):
                    j += 1
                out += self._block("\n".join([m[2], *lines[i + 1:j]]), indent)
                i = j
            elif line.strip() == "$$":
                j = i + 1
                while j < len(lines) and lines[j].strip() != "$$":
                    j += 1
                if j == len(lines):
                    raise ValueError(f"unclosed $$ block: {line!r}")
                out += self._block("\n".join(lines[i + 1:j]), line[:_indent(line)])
                i = j + 1
            elif (one := line.strip()).startswith("$$") and one.endswith("$$") and len(one) > 4:
                out += self._block(one[2:-2], line[:_indent(line)])
                i += 1
            else:
                out.append(self._inline(line))
                i += 1
        return out


class DoctestPreprocessor(Preprocessor):
    """Fences a bare doctest (``>>>`` lines up to a blank line) as ``pycon`` code."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(lines):
            if lines[i].lstrip().startswith(">>>"):
                indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
                j = i
                while j < len(lines) and lines[j].strip():
                    j += 1
                out += ["", f"{indent}```pycon", *lines[i:j], f"{indent}```", ""]
                i = j
            else:
                out.append(lines[i])
                i += 1
        return out


class MathMLExtension(Extension):
    def __init__(self, links=None, **kwargs):
        self.links = dict(links or {})  # name as written -> autorefs identifier
        super().__init__(**kwargs)

    def extendMarkdown(self, md):
        md.preprocessors.register(DoctestPreprocessor(md), "jconv_doctest", 26)
        # After fenced code is stashed (superfences, 25), before raw HTML blocks (20).
        md.preprocessors.register(MathPreprocessor(md, self.links), "jconv_mathml", 24)


def makeExtension(**kwargs):
    return MathMLExtension(**kwargs)
