"""A griffe extension for the docs: render jaxloss's reST-flavoured docstrings.

jaxloss docstrings are Google style with reST inline markup for math and
cross-references. mkdocstrings renders docstrings as Markdown, so before
rendering this extension rewrites, in every docstring:

* ``.. math:: <latex>`` (one line, or with indented continuation lines) into a
  display-math block ``$$ ... $$`` (rendered by pymdownx.arithmatex + MathJax);
* ``:math:`x``` into inline math ``$x$``;
* ``:func:`jaxloss.x```, ``:class:`~jaxloss.X``` and friends into code spans;
* a paragraph ending in ``::`` (a reST literal block) into one ending in ``:``
  (the indented block that follows is already a Markdown code block);
* doctest lines (``>>>``, ``...`` and their output) into fenced ``pycon``
  blocks, so the "Example:" sections render as code, not as quotes;
* a grouped argument line ``reduction, weights, where: as for every jaxloss
  loss.`` into one entry per argument, so each gets its own row (with its
  default) in the parameter table.

Double-backtick literals need no change: they are code spans in Markdown too.
Configured in ``mkdocs.yml`` as ``extensions: [scripts/griffe_rst.py:RSTMarkup]``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_MATH_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)$")
_INLINE_MATH = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc|py:\w+):`~?([^`]+)`")
_LITERAL_COLONS = re.compile(r"(?<=\S)::[ \t]*$")
_DOCTEST = re.compile(r"^(?P<indent>[ \t]*)>>>")
_SECTION = re.compile(r"^(?P<indent>[ \t]*)(Args|Arguments|Parameters):[ \t]*$")
_GROUPED = re.compile(r"^(?P<indent>[ \t]+)(?P<names>\w+(?:,[ \t]*\w+)+):[ \t]*(?P<desc>.*)$")

COMMON = {
    "reduction": '``"mean"`` (default), ``"sum"`` or ``"none"``/``None`` (see the calling convention).',
    "weights": "optional weights, broadcastable to the unreduced loss.",
    "where": "optional boolean mask, broadcastable to the unreduced loss; masked entries get zero gradient.",
}


def _split_grouped(lines: list[str]) -> list[str]:
    out: list[str] = []
    in_args, args_indent = False, 0
    for line in lines:
        m = _SECTION.match(line)
        if m:
            in_args, args_indent = True, len(m.group("indent"))
            out.append(line)
            continue
        if in_args and line.strip() and len(line) - len(line.lstrip()) <= args_indent:
            in_args = False
        g = _GROUPED.match(line) if in_args else None
        if g:
            names = [n.strip() for n in g.group("names").split(",")]
            desc = g.group("desc").strip()
            generic = desc.lower().startswith("as for") or not desc
            for n in names:
                out.append(f"{g.group('indent')}{n}: {COMMON.get(n, desc) if generic else desc}")
            continue
        out.append(line)
    return out


def _fence_doctests(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _DOCTEST.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent = m.group("indent")
        block = []
        while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
            block.append(lines[i][len(indent):])
            i += 1
        out.append(f"{indent}```pycon")
        out.extend(f"{indent}{b}" for b in block)
        out.append(f"{indent}```")
    return out


def convert(text: str) -> str:
    """Rewrite reST math, roles and literal-block markers of one docstring."""
    lines = _fence_doctests(_split_grouped(text.splitlines()))
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _MATH_DIRECTIVE.match(lines[i])
        if lines[i].lstrip().startswith(("```", ">>>", "...")) and not m:
            out.append(lines[i])
            i += 1
            continue
        if not m:
            line = _INLINE_MATH.sub(lambda g: f"${g.group(1).strip()}$", lines[i])
            line = _ROLE.sub(lambda g: f"`{g.group(1)}`", line)
            line = _LITERAL_COLONS.sub(":", line)
            out.append(line)
            i += 1
            continue
        indent = m.group("indent")
        body = [m.group("first").strip()] if m.group("first").strip() else []
        i += 1
        while i < len(lines):
            nxt = lines[i]
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= len(indent):
                break
            body.append(nxt.strip())
            i += 1
        while body and not body[-1]:
            body.pop()
        blank_before = out and out[-1].strip()
        if blank_before:
            out.append("")
        out.append(f"{indent}$$")
        out.extend(f"{indent}{b}" for b in body if b)
        out.append(f"{indent}$$")
        if i < len(lines) and lines[i].strip():
            out.append("")
    return "\n".join(out)


class RSTMarkup(griffe.Extension):
    """Convert docstrings when griffe loads an object (static or dynamic)."""

    def _fix(self, obj: Any) -> None:
        doc = getattr(obj, "docstring", None)
        if doc is not None and doc.value:
            doc.value = convert(doc.value)

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:  # griffe >= 1
        self._fix(obj)

    def on_class_members(self, *, cls: Any, **kwargs: Any) -> None:
        """Hide private and dunder attributes (``__doc__``, ``_fn``, ...) that dynamic
        inspection finds on the generated loss classes."""
        for name in [n for n in cls.members if n.startswith("_")]:
            del cls.members[name]
