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
  default) in the parameter table;
* an item of an ``Args``/``Returns``/``Raises``/``Attributes`` section whose
  text wraps onto lines at the item's own indentation (the usual way a
  ``Returns`` paragraph is written) into one item: griffe's Google parser
  reads such a line as a new item (a second table row for ``Returns``, a
  dropped line for ``Args``), so the wrapped lines are indented as
  continuation lines.

It also shows a default argument that is a dataclass's default instance as
``Layout()`` (not the ``repr`` of every field) in rendered signatures.

Double-backtick literals need no change: they are code spans in Markdown too.
Configured in ``mkdocs.yml`` as ``extensions: [scripts/griffe_rst.py:RSTMarkup]``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

import griffe

from jaxloss._docs import plain_markup

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


_ITEM_SECTION = re.compile(
    r"^(?P<indent>[ \t]*)(?P<kind>Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters"
    r"|Attributes|Raises|Exceptions|Warns|Warnings|Returns|Return|Yields|Yield|Receives|Receive):[ \t]*$"
)
_NAMED_ITEM = re.compile(r"^\*{0,2}[A-Za-z_][\w.]*(?:[ \t]*\([^)]*\))?:(?:[ \t]|$)")
_RETURNS = ("Returns", "Return", "Yields", "Yield", "Receives", "Receive")


def _join_wrapped_items(lines: list[str]) -> list[str]:
    """Indent the wrapped lines of a section item as continuation lines.

    griffe's Google parser starts a new item at every line indented like the
    first item, and continues an item only on lines indented twice as deep.
    In a named section (``Args``, ``Attributes``, ``Raises``) a line at the
    item indentation that is not ``name: ...`` is therefore the wrapped text
    of the item above; in a ``Returns``/``Yields`` section every such line is,
    unless the items are named (``name: ...`` on each of them).
    """
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _ITEM_SECTION.match(lines[i])
        out.append(lines[i])
        i += 1
        if not m:
            continue
        head = len(m.group("indent"))
        end = i
        while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > head):
            end += 1
        section = lines[i:end]
        body = [s for s in section if s.strip()]
        if not body:
            continue
        item = len(body[0]) - len(body[0].lstrip())
        cont = " " * max(2 * item, item + 2)
        if m.group("kind") in _RETURNS:
            named = all(_NAMED_ITEM.match(s.strip()) for s in body if len(s) - len(s.lstrip()) == item)
        else:
            named = True
        first, fence = True, False
        for s in section:
            stripped = s.strip()
            depth = len(s) - len(s.lstrip())
            if stripped.startswith("```"):
                fence = not fence
            if stripped and depth == item and not fence and not stripped.startswith("```"):
                if not first and not (named and _NAMED_ITEM.match(stripped)):
                    s = cont + stripped
                first = False
            out.append(s)
        i = end
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
    """Rewrite reST math, roles and literal-block markers of one docstring: the
    section and doctest fixes above, then ``jaxloss._docs.plain_markup``, the one
    converter the runtime docstrings (``help()``) go through too. The docstrings
    griffe inspects have already been through it; it leaves its output as it is."""
    lines = _fence_doctests(_join_wrapped_items(_split_grouped(text.splitlines())))
    return plain_markup("\n".join(lines))


class RSTMarkup(griffe.Extension):
    """Convert docstrings when griffe loads an object (static or dynamic)."""

    def _fix(self, obj: Any) -> None:
        doc = getattr(obj, "docstring", None)
        if doc is not None and doc.value:
            doc.value = convert(doc.value)

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:  # griffe >= 1
        self._fix(obj)

    def on_function_instance(self, *, node: Any, func: Any, **kwargs: Any) -> None:
        """Show a default that is a dataclass's default instance (``layout=Layout()``)
        as ``Layout()``, not as the ``repr`` of every field."""
        runtime = getattr(node, "obj", None)
        try:
            params = inspect.signature(runtime).parameters
        except (TypeError, ValueError):
            return
        for param in func.parameters:
            value = getattr(params.get(param.name), "default", inspect.Parameter.empty)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                try:
                    is_default = value == type(value)()
                except Exception:
                    continue
                if is_default:
                    param.default = f"{type(value).__name__}()"

    def on_class_members(self, *, cls: Any, **kwargs: Any) -> None:
        """Hide private and dunder attributes (``__doc__``, ``_fn``, ...) that dynamic
        inspection finds on the generated loss classes."""
        for name in [n for n in cls.members if n.startswith("_")]:
            del cls.members[name]
