"""The documentation: ``mkdocs build --strict`` passes, the gallery covers every
elementwise loss, the math of the docstrings is rendered, and every ``>>>`` block
of the Markdown pages prints what the page says.

Nothing is skipped: mkdocs, mkdocs-material, mkdocstrings and matplotlib are
imported at the top, so a missing dependency fails the module.
"""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from pathlib import Path

import griffe  # noqa: F401  (mkdocstrings-python's loader)
import matplotlib  # noqa: F401  (the gallery)
import material  # noqa: F401  (mkdocs-material)
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


def test_build_strict_has_every_page(site):
    for page in ("index.html", "choosing/index.html", "examples/index.html", "gallery/index.html",
                 "coming_from/index.html", "large_vocab/index.html", "api/regression/index.html",
                 "api/classification/index.html", "api/segmentation/index.html", "api/metric/index.html",
                 "api/divergence/index.html", "api/large_vocab/index.html", "api/train/index.html",
                 "api/core/index.html"):
        assert (site / page).is_file(), page


def test_gallery_has_every_elementwise_loss(site):
    names = gallery.elementwise_losses()
    assert {"mse_loss", "huber_loss", "binary_cross_entropy_with_logits", "sigmoid_focal_loss"} <= set(names)
    html = (site / "gallery" / "index.html").read_text()
    for name in names:
        png = site / "gallery" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 5000, name
        assert f"{name}.png" in html, name


def test_api_reference_renders_math_and_every_public_name(site):
    import jaxloss

    for module in ("regression", "classification", "divergence", "segmentation", "metric", "large_vocab"):
        html = (site / "api" / module / "index.html").read_text()
        mod = getattr(jaxloss, module)
        for name in mod.__all__:
            assert f'id="jaxloss.{module}.{name}"' in html, (module, name)
        assert 'class="arithmatex"' in html, module  # .. math:: became display math
        assert ".. math::" not in html and ":math:`" not in html, module
        assert "&gt;&gt;&gt;" in html and "<blockquote>" not in html, module  # doctests are code, not quotes
    html = (site / "api" / "regression" / "index.html").read_text()
    assert "\\delta" in html and "HuberLoss" in html


def test_example_plots_exist_for_the_examples_page():
    text = (DOCS / "examples.md").read_text()
    for ref in re.findall(r"\]\((assets/examples/[\w.]+\.png)\)", text):
        assert (DOCS / ref).is_file(), ref


def test_gallery_script_cli(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gallery.py"), "--out", str(tmp_path), "--only", "huber_loss"],
        capture_output=True, text=True, env={**__import__("os").environ, "MPLBACKEND": "Agg"}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "gallery" / "huber_loss.png").stat().st_size > 5000
    md = (tmp_path / "gallery.md").read_text()
    assert "### huber_loss" in md and "$$" in md and "[jaxloss.regression.huber_loss]" in md


@pytest.mark.parametrize("page", ["index.md", "examples.md", "coming_from.md"])
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
