"""mkdocs hooks for the jaxloss docs (``hooks:`` in ``mkdocs.yml``).

* ``on_files`` generates the gallery page and its plots with ``scripts/gallery.py``
  into a temporary directory and adds them to the site as ``gallery.md`` and
  ``gallery/*.png``, so the gallery always matches ``jaxloss.REGISTRY`` and no
  generated file lives in ``docs/``.
* ``on_page_markdown`` replaces the marker ``<!-- jaxloss:registry-table -->`` of
  ``api/index.md`` with a table of every registered loss (its optax column names
  only functions that ``optax.losses`` has).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gallery  # noqa: E402  (scripts/gallery.py)

_TMP: tempfile.TemporaryDirectory | None = None


def on_files(files: Files, config, **kwargs) -> Files:
    global _TMP
    if _TMP is None:
        _TMP = tempfile.TemporaryDirectory(prefix="jaxloss-gallery-")
    out = Path(_TMP.name)
    markdown, pngs = gallery.build(out, image_prefix="gallery/")
    for uri in ["gallery.md", *(f"gallery/{p.name}" for p in pngs)]:
        existing = files.get_file_from_path(uri)
        if existing is not None:  # a stale copy written by hand into docs/
            files.remove(existing)
    files.append(File.generated(config, "gallery.md", content=markdown))
    for png in pngs:
        files.append(File.generated(config, f"gallery/{png.name}", abs_src_path=str(png)))
    return files


MARKER = "<!-- jaxloss:registry-table -->"


def registry_table() -> str:
    """The table of every registered loss; ``ValueError`` when a loss's
    ``Example(optax=...)`` names no function of ``optax.losses`` (the table would
    claim a counterpart that does not exist)."""
    import optax

    import jaxloss

    for name, spec in jaxloss.REGISTRY.items():
        if spec.example.optax and not callable(getattr(optax.losses, spec.example.optax, None)):
            raise ValueError(f"{name}: Example(optax={spec.example.optax!r}) is not a function of optax.losses")
    rows = ["| function | class | family | hyper-parameters (traced) | options (static) | optax |",
            "|---|---|---|---|---|---|"]
    for name, spec in sorted(jaxloss.REGISTRY.items(), key=lambda kv: (kv[1].family, kv[0])):
        module = spec.fn.__module__.split(".")[-1]
        hp = ", ".join(f"`{k}={v!r}`" for k, v in spec.hparams.items()) or "--"
        st = ", ".join(f"`{k}={v!r}`" for k, v in spec.static.items()) or "--"
        optax_cell = f"`optax.losses.{spec.example.optax}`" if spec.example.optax else "--"
        rows.append(
            f"| [`{name}`][jaxloss.{module}.{name}] | [`{spec.cls.__name__}`][jaxloss.{module}.{spec.cls.__name__}] "
            f"| {spec.family} | {hp} | {st} | {optax_cell} |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, registry_table())
    return markdown


def on_shutdown(**kwargs) -> None:
    global _TMP
    if _TMP is not None:
        _TMP.cleanup()
        _TMP = None
