"""The documentation: ``mkdocs build --strict`` passes, the gallery covers every
elementwise loss, the math of the docstrings is rendered, and every ``>>>`` block
of the Markdown pages prints what the page says.

Nothing is skipped: mkdocs, mkdocs-material, mkdocstrings and matplotlib are
imported at the top, so a missing dependency fails the module.
"""

from __future__ import annotations

import doctest
import inspect
import re
import subprocess
import sys
from pathlib import Path

import griffe  # noqa: F401  (mkdocstrings-python's loader)
import material  # noqa: F401  (mkdocs-material)
import matplotlib  # noqa: F401  (the gallery)
import mkdocs  # noqa: F401
import mkdocstrings  # noqa: F401
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "scripts"))

import gallery  # noqa: E402
import griffe_rst  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**__import__("os").environ, "MPLBACKEND": "Agg", "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out


@pytest.mark.slow
def test_build_strict_has_every_page(site):
    for page in ("index.html", "choosing/index.html", "examples/index.html", "gallery/index.html",
                 "coming_from/index.html", "frameworks/index.html", "large_vocab/index.html",
                 "ranking/index.html", "forecasting/index.html", "api/ranking/index.html",
                 "api/probabilistic/index.html",
                 "contrastive/index.html", "api/multimodal/index.html", "api/margin_softmax/index.html",
                 "dense_prediction/index.html", "api/detection/index.html",
                 "api/preference/index.html", "post_training/index.html",
                 "contributing/index.html", "api/index.html", "api/regression/index.html",
                 "api/binary/index.html", "api/multiclass/index.html", "api/segmentation/index.html",
                 "api/metric/index.html", "api/divergence/index.html", "api/large_vocab/index.html",
                 "api/sequence/index.html", "sequence/index.html", "api/train/index.html", "api/core/index.html"):
        assert (site / page).is_file(), page


@pytest.mark.slow
def test_gallery_has_every_elementwise_loss(site):
    names = gallery.elementwise_losses()
    assert {"mse_loss", "huber_loss", "binary_cross_entropy_with_logits", "sigmoid_focal_loss"} <= set(names)
    html = (site / "gallery" / "index.html").read_text()
    for name in names:
        png = site / "gallery" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 5000, name
        assert f"{name}.png" in html, name


@pytest.mark.slow
def test_api_reference_renders_math_and_every_public_name(site):
    import jaxloss

    for module in ("regression", "binary", "multiclass", "divergence", "segmentation", "metric", "large_vocab",
                   "ranking", "probabilistic", "multimodal", "margin_softmax", "sequence", "detection", "preference",
                   "self_supervised", "image", "geometry", "gan"):
        html = (site / "api" / module / "index.html").read_text()
        mod = getattr(jaxloss, module)
        for name in mod.__all__:
            assert f'id="jaxloss.{module}.{name}"' in html, (module, name)
        assert 'class="arithmatex"' in html, module  # .. math:: became display math
        assert ".. math::" not in html and ":math:`" not in html, module
        assert "&gt;&gt;&gt;" in html and "<blockquote>" not in html, module  # doctests are code, not quotes
    html = (site / "api" / "regression" / "index.html").read_text()
    assert "\\delta" in html and "HuberLoss" in html


@pytest.mark.slow
def test_api_pages_show_no_private_names_and_one_row_per_return(site):
    for page in sorted((site / "api").glob("*/index.html")):
        html = page.read_text()
        assert "FunctionLoss" not in html and "Bases:" not in html, page  # the generated classes' private base
        assert "jaxloss._objects" not in re.sub(r'title="[^"]*"', "", html), page
        for table in re.findall(r"Returns:</span></p>(.*?)</table>", html, re.S):
            assert table.count('<tr class="doc-section-item">') == 1, (page, table[:500])
    html = (site / "api" / "core" / "index.html").read_text()
    for name in ("loss", "Loss", "WeightedSum", "LossSpec", "Example", "Layout", "Unreduced", "Static",
                 "Interval", "value_checks"):
        assert f'id="jaxloss.{name}"' in html, name
    assert "layout=Layout()" in re.sub(r"<[^>]+>", "", html)  # not the repr of every field


def test_example_plots_exist_for_the_examples_page():
    text = (DOCS / "examples.md").read_text()
    for ref in re.findall(r"\]\((assets/examples/[\w.]+\.png)\)", text):
        assert (DOCS / ref).is_file(), ref


@pytest.mark.slow
def test_gallery_script_cli(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gallery.py"), "--out", str(tmp_path), "--only", "huber_loss"],
        capture_output=True, text=True, env={**__import__("os").environ, "MPLBACKEND": "Agg"}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "gallery" / "huber_loss.png").stat().st_size > 5000
    md = (tmp_path / "gallery.md").read_text()
    assert "### huber_loss" in md and "$$" in md and "[jaxloss.regression.huber_loss]" in md


@pytest.mark.parametrize("page", ["index.md", "examples.md", "coming_from.md", "contributing.md", "ranking.md",
                                  "forecasting.md", "sequence.md", "dense_prediction.md", "post_training.md",
                                  "self_supervised.md"])
def test_page_examples_print_what_the_page_says(page):
    saved = np.get_printoptions()
    try:
        result = doctest.testfile(str(DOCS / page), module_relative=False, verbose=False, report=True,
                                  optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    finally:
        np.set_printoptions(**saved)
    assert result.attempted > 5, page
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in docs/{page} failed (see stdout)"


def test_every_nav_page_links_resolve_to_files():
    text = (ROOT / "mkdocs.yml").read_text()
    generated = {"gallery.md"}
    for page in re.findall(r"(?:^|\s)([\w/]+\.md)\s*$", text, re.MULTILINE):
        assert page in generated or (DOCS / page).is_file(), page


def test_rst_markup_conversion():
    doc = (
        "Summary.\n\n"
        ".. math:: \\ell = (p - t)^2\n\n"
        "Its gradient is :math:`2(p - t)`; see :func:`jaxloss.mae_loss`.\n\n"
        "Args:\n"
        "  pred: predictions.\n"
        "  reduction, weights, where: as for every jaxloss loss.\n\n"
        "Example:\n"
        "  >>> 1 + 1\n"
        "  2\n"
    )
    out = griffe_rst.convert(doc)
    assert "$$\n\\ell = (p - t)^2\n$$" in out
    assert "$2(p - t)$" in out and "`jaxloss.mae_loss`" in out
    assert "  reduction: " in out and "  weights: " in out and "  where: " in out
    assert "  ```pycon\n  >>> 1 + 1\n  2\n  ```" in out
    multi = griffe_rst.convert("Text::\n\n.. math::\n   a \\\\\n   b\n\nafter")
    assert multi.startswith("Text:\n") and "$$\na \\\\\nb\n$$\n\nafter" in multi


def _parse_google(text: str) -> dict:
    """The sections of a converted docstring as griffe's Google parser reads them."""
    sections = griffe.Docstring(text, lineno=1).parse("google", warn_missing_types=False, warn_unknown_params=False)
    return {s.kind.value: s.value for s in sections}


def test_rst_wrapped_returns_and_args_are_one_item():
    doc = (
        "Summary.\n\n"
        "Args:\n"
        "  pred: predictions of any\n"
        "  shape, floating point.\n"
        "  target: the targets, ``:math:`t```\n"
        "    with a continuation line.\n\n"
        "Returns:\n"
        "  The reduced loss (float32 for bf16 inputs); with\n"
        "  ``reduction=\"none\"`` the per-element losses,\n"
        "  :math:`\\ell_i` for each :math:`i`.\n"
    )
    sections = _parse_google(griffe_rst.convert(doc))
    params = sections["parameters"]
    assert [p.name for p in params] == ["pred", "target"]
    assert params[0].description == "predictions of any\nshape, floating point."
    assert params[1].description.endswith("with a continuation line.")
    (returned,) = sections["returns"]  # one row, not three
    assert returned.description.startswith("The reduced loss") and "$\\ell_i$ for each $i$." in returned.description
    # named return values stay one item each
    named = _parse_google(griffe_rst.convert("S.\n\nReturns:\n  s: the sum,\n    wrapped.\n  w: the weight.\n"))
    assert [(r.name, r.description) for r in named["returns"]] == [("s", "the sum,\nwrapped."), ("w", "the weight.")]


def test_every_loss_documents_the_shared_arguments_once_and_one_return():
    import jaxloss

    for name, spec in jaxloss.REGISTRY.items():
        sections = _parse_google(griffe_rst.convert(inspect.getdoc(spec.fn)))
        params = [p.name for p in sections["parameters"]]
        assert params[-3:] == ["reduction", "weights", "where"] and len(params) == len(set(params)), (name, params)
        assert set(params) == {*spec.inputs, *spec.hparams, *spec.static, "reduction", "weights", "where"}, name
        assert len(sections["returns"]) == 1, name
        assert "sum_and_weight" in sections["parameters"][-3].description, name


def test_registry_table_names_only_optax_functions_that_exist():
    import mkdocs_hooks
    import optax

    import jaxloss

    table = mkdocs_hooks.registry_table()
    for name, spec in jaxloss.REGISTRY.items():
        (row,) = [r for r in table.splitlines() if r.startswith(f"| [`{name}`]")]
        if spec.example.optax:
            assert callable(getattr(optax.losses, spec.example.optax, None)), (name, spec.example.optax)
            assert row.endswith(f"| `optax.losses.{spec.example.optax}` |"), row
        else:
            assert row.endswith("| -- |"), row
    assert jaxloss.REGISTRY["mae_loss"].example.optax is None  # optax has no mean absolute error


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(), flags=re.M | re.S)


def test_contributing_excerpts_match_the_source_and_the_other_blocks_run():
    """A ``python`` block of docs/contributing.md whose first line is ``# <file>`` is an
    excerpt: its lines (``...`` marks lines left out) are lines of that file, in order.
    Every other ``python`` block runs, top to bottom, in one namespace."""
    excerpts = runnable = 0
    namespace: dict = {}
    for block in _python_blocks("contributing.md"):
        first, _, body = block.partition("\n")
        path = ROOT / first[1:].strip() if first.startswith("# ") else None
        if path is not None and path.is_file():
            excerpts += 1
            source = [line.strip() for line in path.read_text().splitlines()]
            at = 0
            for line in (x.strip() for x in body.splitlines()):
                if not line or line == "...":
                    continue
                assert line in source[at:], f"docs/contributing.md: {line!r} is not in {first[2:]} (after line {at})"
                at = source.index(line, at) + 1
        else:
            runnable += 1
            exec(compile(block, "docs/contributing.md", "exec"), namespace)  # noqa: S102
    assert excerpts >= 4 and runnable >= 1, (excerpts, runnable)


# -- issue 26: no placeholders in the docs -------------------------------------

def test_docs_hold_no_placeholder_tokens():
    """Unfilled tokens such as BENCH_TIME, TODO or TBD never reach a page."""
    pattern = re.compile(r"\b(BENCH_[A-Z_]*|TODO|TBD|FIXME|XXX|PLACEHOLDER)\b|\{\{[^}]*\}\}")
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for i, line in enumerate(page.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{page.relative_to(DOCS)}:{i}: {line.strip()}")
    assert not found, "\n".join(found)


# -- issue 26: help() shows no raw reST ---------------------------------------

_RAW_REST = re.compile(r":(?:math|func|class|meth|attr|mod|data|obj|exc):`|\.\. math::")


@pytest.mark.parametrize("name", sorted(__import__("jaxloss").__all__))
def test_help_shows_no_raw_rest_roles(name):
    """Every public name's runtime docstring (what ``help()`` prints), doctest
    lines aside (a doctest may define a loss whose docstring uses a role)."""
    import jaxloss

    doc = inspect.getdoc(getattr(jaxloss, name)) or ""
    text = "\n".join(line for line in doc.splitlines() if not line.lstrip().startswith((">>>", "...")))
    assert not _RAW_REST.search(text), f"{name}: {_RAW_REST.search(text).group(0)!r} in its docstring"


def test_one_converter_for_help_and_the_site():
    from jaxloss._docs import plain_markup

    rst = ("Loss :math:`\\ell = x^2` of\n:func:`jaxloss.f` and :class:`~jaxloss.C`, a wrapped :math:`a +\n  b`:\n\n"
           "  .. math:: y = \\frac{a}{b}\n      + c\n\n  after.\n")
    plain = plain_markup(rst)
    assert "$\\ell = x^2$" in plain and "`jaxloss.f`" in plain and "`jaxloss.C`" in plain
    assert "$a +\n  b$" in plain and "  $$\n  y = \\frac{a}{b}\n  + c\n  $$" in plain and ".. math" not in plain
    assert plain_markup(plain) == plain  # the site converts the inspected (already plain) docstrings again
    assert griffe_rst.convert(plain) == griffe_rst.convert(rst)
    import jaxloss
    assert "$$" in jaxloss.ctc_loss.__doc__ and "$" in jaxloss.make_train_step.__doc__


def test_large_vocab_explicit_mesh_example_runs():
    """The ``>>>`` blocks of docs/large_vocab.md (its Explicit-mesh example runs on one device too)."""
    result = doctest.testfile(str(DOCS / "large_vocab.md"), module_relative=False, verbose=False, report=True,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
