"""The shared ``reduction``/``weights``/``where`` arguments of every loss's
docstring, worded once from its layout (the where mode and the input roles)."""

from __future__ import annotations

import re

from ._layout import Layout
from ._signature import Signature

__all__ = ["document", "plain_markup", "where_wording"]

_MATH_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)$")
_INLINE_MATH = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc|py:\w+):`~?([^`]+)`")
_LITERAL_COLONS = re.compile(r"(?<=\S)::[ \t]*$")


def plain_markup(text: str | None) -> str | None:
    """A docstring's reST markup rewritten so that it reads as plain text in
    ``help()`` and renders on the docs site (one converter for both:
    ``scripts/griffe_rst.py`` runs it too, and it leaves its own output as it is):

    * ``.. math:: <latex>`` (with indented continuation lines) becomes a
      display block, the LaTeX between lines holding ``$$``;
    * ``:math:`x``` becomes ``$x$``;
    * ``:func:`jaxloss.f```, ``:class:`~jaxloss.C``` and the other roles
      become the name in single backticks;
    * a line ending in a literal-block ``::`` ends in ``:``.

    Doctest lines (``>>>``, ``...``) and fence lines are kept as they are.
    """
    if not text:
        return text
    # a role wrapped onto the next line first (its line break kept)
    text = re.sub(r":math:`([^`]*\n[^`]*)`", lambda g: f"${g.group(1).strip()}$", text)
    text = re.sub(r":(?:func|class|meth|attr|mod|data|obj|exc|py:\w+):`~?([^`]*\n[^`]*)`",
                  lambda g: f"`{g.group(1).strip()}`", text)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _MATH_DIRECTIVE.match(lines[i])
        if not m:
            line = lines[i]
            if not line.lstrip().startswith(("```", ">>>", "...")):
                line = _INLINE_MATH.sub(lambda g: f"${g.group(1).strip()}$", line)
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
        if out and out[-1].strip():
            out.append("")
        out.append(f"{indent}$$")
        out.extend(f"{indent}{b}" for b in body if b)
        out.append(f"{indent}$$")
        if i < len(lines) and lines[i].strip():
            out.append("")
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")

_BY_MODE = {
    "elements": (
        "per score when it broadcasts to the unreduced loss; otherwise per element of the inputs "
        "(a pixel mask or pixel weights: masked pixels leave the counts, a weight k counts a pixel k times, "
        "and a score whose pixels are all masked leaves the mean)"
    ),
    "items": (
        "per entry of the unreduced loss when it broadcasts to it; otherwise per element of the inputs "
        "(``where`` marks the valid elements: a masked one is left out as if sliced away, and an entry "
        "with no valid element leaves the mean; ``weights`` weight each element's terms as described above)"
    ),
    "anchors": "per anchor, shape ``[B]`` (a masked anchor still serves as the others' positive or negative)",
}


def where_wording(sig: Signature, layout: Layout) -> str:
    """What shape ``weights``/``where`` take and what a masked entry does to the inputs."""
    if layout.where in _BY_MODE:
        return _BY_MODE[layout.where]
    roles = {n: layout.role(n).shape for n in sig.inputs}
    reduced = [n for n, s in roles.items() if s == "reduced"]
    if layout.axis is not None:
        text = "broadcastable to the per-example shape (the inputs without the reduced axis)"
    elif all(s == "shared" for s in roles.values()):
        return "broadcastable to the inputs' shape (the unreduced loss)"
    elif reduced:
        text = f"broadcastable to the unreduced loss, the shape of ``{reduced[0]}``"
    else:
        text = "broadcastable to the unreduced loss"
    free = [n for n, s in roles.items() if s == "free"]
    zeroed = [n for n, s in roles.items() if s != "free"]
    if free and zeroed:
        names = ", ".join(f"``{n}``" for n in zeroed)
        text += f" (a masked entry's {names} {'is' if len(zeroed) == 1 else 'are'} read as 0)"
    return text


def document(doc: str | None, sig: Signature, layout: Layout) -> str | None:
    """The kernel's docstring with the shared ``reduction``/``weights``/``where``
    arguments appended to its Args, written here once for every loss, its reST
    markup made plain (:func:`plain_markup`)."""
    if not doc or "Args:" not in doc:
        return plain_markup(doc)
    indent = " " * 4
    lines = [
        '  reduction: ``"mean"`` (default), ``"sum"``, ``"none"`` (or ``None``), or',
        f'{indent}``"sum_and_weight"``: the pair ``(s, w)`` with ``"mean" == s / w``, for',
        f"{indent}exact means over micro-batches and devices (``sum(s) / sum(w)``).",
        f"  weights: optional non-negative weights, {where_wording(sig, layout)};",
        f"{indent}``\"mean\"`` is the weighted mean ``sum(w l) / sum(w)``.",
        "  where: optional boolean mask of the same shape as ``weights``, or an integer or",
        f"{indent}float 0/1 mask (read as ``where != 0``: any nonzero value counts as True;",
        f"{indent}a value other than 0 and 1 is an error under ``jaxloss.value_checks()``);",
        f"{indent}masked entries contribute exactly 0 to the value and the gradient (0 if all",
        f"{indent}are masked).",
    ]
    head, sep, tail = doc.partition("Args:")
    body = tail.split("\n\n", 1)
    base = " " * (len(head) - len(head.rstrip(" ")))
    extra = "\n".join(base + line for line in lines)
    body[0] = body[0].rstrip() + "\n" + extra
    return plain_markup(head + sep + "\n\n".join(body))
