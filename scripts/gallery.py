"""Generate the docs gallery: every elementwise loss in ``jaxloss.REGISTRY`` and
its derivative, as PNG plots, plus the Markdown page that shows them.

A loss is *elementwise* when all its inputs share one shape and
``reduction="none"`` returns that shape (the regression and binary families
today; a new elementwise loss appears here automatically). For each one the
first input (the prediction, logit, score or probability) varies along the x
axis while the others are held fixed; a loss with a hyper-parameter sweep in the
registry is drawn once per swept value, computed with one ``jax.vmap`` over the
hyper-parameter (which is traced, so this is a single compilation).

    python scripts/gallery.py --out /tmp/gallery      # writes PNGs + gallery.md there

The docs build calls :func:`build` from ``scripts/mkdocs_hooks.py``, so the
gallery always matches the registry and nothing generated is committed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss


@dataclass
class View:
    """How to draw one loss: the x range of its first input and the fixed values of
    the other inputs, one curve per entry of ``curves`` (label -> other inputs)."""

    xlabel: str
    lo: float
    hi: float
    curves: dict = field(default_factory=dict)
    sweep_curve: str | None = None  # the curve the hyper-parameter sweep is drawn at
    overview: str | None = None  # which overview figure the default curve joins
    grad_ylim: tuple[float, float] | None = None  # clip the derivative panel (poles at the ends)


RESIDUAL = "prediction  (target = 0)"

VIEWS = {
    "binary_cross_entropy": View("predicted probability p", 1e-3, 1 - 1e-3,
                                 {"target 1": (1.0,), "target 0": (0.0,)}, overview="probs",
                                 grad_ylim=(-20.0, 20.0)),
    "binary_cross_entropy_with_logits": View("logit x", -6, 6, {"target 1": (1.0,), "target 0": (0.0,)},
                                             sweep_curve="target 1", overview="logits"),
    "sigmoid_focal_loss": View("logit x", -6, 6, {"target 1": (1.0,), "target 0": (0.0,)},
                               sweep_curve="target 1", overview="logits"),
    "hinge_loss": View("score s", -3, 3, {"target +1": (1.0,), "target -1": (-1.0,)}, overview="logits"),
    "squared_hinge_loss": View("score s", -3, 3, {"target +1": (1.0,), "target -1": (-1.0,)}, overview="logits"),
    "poisson_nll_loss": View("log rate  (log_input=True)", -3, 3,
                             {"count 0": (0.0,), "count 2": (2.0,), "count 5": (5.0,)}),
    "gaussian_nll_loss": View(RESIDUAL, -3, 3,
                              {"var 0.5": (0.0, 0.5), "var 1": (0.0, 1.0), "var 2": (0.0, 2.0)}),
    "msle_loss": View("prediction  (target = 1)", 0.0, 4.0, {"target 1": (1.0,)}),
    "mape_loss": View("prediction  (target = 1)", 0.0, 4.0, {"target 1": (1.0,)}),
    "margin_ranking_loss": View("x1  (x2 = 0)", -3, 3, {"y = +1": (0.0, 1.0), "y = -1": (0.0, -1.0)},
                                sweep_curve="y = +1"),
    "quantile_loss": View(RESIDUAL, -3, 3, {"target 0": (0.0,)}, sweep_curve="target 0", overview="residual"),
}


def default_view(name: str, spec) -> View:
    """Residual view for a regression-like loss; for anything else, the other
    inputs are held at the first value of the registry's sample inputs."""
    n_other = len(spec.inputs) - 1
    if spec.family == "regression" and n_other == 1:
        return View(RESIDUAL, -3, 3, {"target 0": (0.0,)}, sweep_curve="target 0", overview="residual")
    sample = spec.example.sample(np.random.default_rng(0))
    fixed = tuple(float(np.asarray(a).ravel()[0]) for a in sample[1:])
    return View(f"{spec.inputs[0]}  (others = {', '.join(f'{v:.2g}' for v in fixed)})", -3, 3,
                {"sample": fixed}, sweep_curve="sample")


def is_elementwise(spec) -> bool:
    if spec.example.sample is None:
        return False
    inputs = spec.example.sample(np.random.default_rng(0))
    shapes = {np.shape(a) for a in inputs}
    if len(shapes) != 1 or any(not np.issubdtype(np.asarray(a).dtype, np.floating) for a in inputs):
        return False
    out = jax.eval_shape(lambda *xs: spec.fn(*xs, reduction="none"), *inputs)
    return out.shape == np.shape(inputs[0])


def elementwise_losses() -> list[str]:
    return [n for n, s in jaxloss.REGISTRY.items() if is_elementwise(s)]


def curve(fn, xs, others, **hparams):
    """Loss and its derivative w.r.t. the first input, per point of ``xs``."""
    consts = [jnp.full_like(xs, v) for v in others]

    def total(x):
        return fn(x, *consts, reduction="sum", **hparams)

    return fn(xs, *consts, reduction="none", **hparams), jax.grad(total)(xs)


def sweep_curves(fn, xs, others, hparam, values):
    """All swept values at once: ``vmap`` over the (traced) hyper-parameter."""
    consts = [jnp.full_like(xs, v) for v in others]

    def one(h):
        value = fn(xs, *consts, reduction="none", **{hparam: h})
        grad = jax.grad(lambda x: fn(x, *consts, reduction="sum", **{hparam: h}))(xs)
        return value, grad

    return jax.vmap(one)(jnp.asarray(values, dtype=xs.dtype))


def grid(view: View) -> jnp.ndarray:
    lo, hi = view.lo, view.hi
    if lo == 0.0:  # strictly positive inputs
        lo = (hi - lo) / 400
    return jnp.linspace(lo, hi, 401, dtype=jnp.float32)


def first_formula(doc: str) -> str | None:
    """The first ``.. math::`` block of a docstring, as LaTeX."""
    lines = (doc or "").splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"(\s*)\.\. math::\s*(.*)$", line)
        if not m:
            continue
        indent, body = len(m.group(1)), [m.group(2)] if m.group(2).strip() else []
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            body.append(nxt.strip())
        return " ".join(b for b in body if b).strip() or None
    return None


def _plt():
    import matplotlib

    if os.environ.get("MPLBACKEND") is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(name: str, spec, view: View, path: Path) -> None:
    plt = _plt()
    xs = grid(view)
    fig, (ax_l, ax_g) = plt.subplots(1, 2, figsize=(8.4, 3.2))
    if spec.example.sweep is not None and view.sweep_curve is not None:
        hparam, values = spec.example.sweep
        others = view.curves[view.sweep_curve]
        vals, grads = sweep_curves(spec.fn, xs, others, hparam, values)
        for v, lv, gv in zip(values, vals, grads):
            label = f"{hparam}={v:g}" + ("" if len(view.curves) == 1 else f", {view.sweep_curve}")
            ax_l.plot(xs, lv, lw=1.8, label=label)
            ax_g.plot(xs, gv, lw=1.8, label=label)
        rest = {k: v for k, v in view.curves.items() if k != view.sweep_curve}
    else:
        rest = view.curves
    for label, others in rest.items():
        lv, gv = curve(spec.fn, xs, others)
        style = "--" if spec.example.sweep is not None and view.sweep_curve is not None else "-"
        ax_l.plot(xs, lv, style, lw=1.8, label=label)
        ax_g.plot(xs, gv, style, lw=1.8, label=label)
    if view.grad_ylim is not None:
        ax_g.set_ylim(*view.grad_ylim)
    ax_l.set_title(f"{name}")
    ax_g.set_title(f"d {name} / d {spec.inputs[0]}")
    for ax in (ax_l, ax_g):
        ax.set_xlabel(view.xlabel)
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.grid(alpha=0.3)
    ax_l.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


OVERVIEWS = {
    "residual": ("Regression losses against the residual (default hyper-parameters)", "prediction - target"),
    "logits": ("Binary losses on logits/scores, positive target (default hyper-parameters)", "logit / score"),
}


def plot_overview(kind: str, members: list[str], path: Path) -> None:
    plt = _plt()
    title, xlabel = OVERVIEWS[kind]
    fig, (ax_l, ax_g) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, name in enumerate(members):
        spec, view = jaxloss.REGISTRY[name], VIEWS.get(name) or default_view(name, jaxloss.REGISTRY[name])
        xs = jnp.linspace(-3.0, 3.0, 401, dtype=jnp.float32)
        others = next(iter(view.curves.values()))
        lv, gv = curve(spec.fn, xs, others)
        style = ("-", "--", "-.", ":")[i % 4]  # coinciding curves (huber, smooth_l1) stay visible
        ax_l.plot(xs, lv, style, lw=1.8, label=name)
        ax_g.plot(xs, gv, style, lw=1.8, label=name)
    ax_l.set_ylim(-0.2, 4.5)
    ax_l.set_title("loss")
    ax_g.set_title("derivative")
    for ax in (ax_l, ax_g):
        ax.set_xlabel(xlabel)
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.grid(alpha=0.3)
    ax_l.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def build(out_dir: Path, image_prefix: str = "gallery/", only: list[str] | None = None) -> tuple[str, list[Path]]:
    """Write every plot under ``out_dir / image_prefix`` and return the page's
    Markdown (image links relative to the page) and the list of PNG paths.
    ``only`` restricts the page to some of the elementwise losses."""
    img_dir = out_dir / image_prefix
    img_dir.mkdir(parents=True, exist_ok=True)
    names = elementwise_losses()
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit(f"not elementwise losses of jaxloss.REGISTRY: {unknown}")
        names = [n for n in names if n in only]
    pngs: list[Path] = []
    by_family: dict[str, list[str]] = {}
    overview_members: dict[str, list[str]] = {}
    for name in names:
        spec = jaxloss.REGISTRY[name]
        view = VIEWS.get(name) or default_view(name, spec)
        by_family.setdefault(spec.family, []).append(name)
        if view.overview in OVERVIEWS:
            overview_members.setdefault(view.overview, []).append(name)
        path = img_dir / f"{name}.png"
        plot_loss(name, spec, view, path)
        pngs.append(path)
    for kind, members in overview_members.items():
        path = img_dir / f"overview_{kind}.png"
        plot_overview(kind, members, path)
        pngs.append(path)

    md = [
        "# Gallery",
        "",
        "Every elementwise loss in jaxloss and its derivative with respect to its first",
        "input (the prediction, logit, score or probability), the other inputs held fixed.",
        "Where a loss has a hyper-parameter, one curve is drawn per value; those curves come",
        "from a single `jax.vmap` over the hyper-parameter, which is traced, so the sweep",
        "compiles once. The page and its plots are generated from `jaxloss.REGISTRY` by",
        "`scripts/gallery.py` at every docs build, so a new elementwise loss appears here",
        "without further work.",
        "",
        f"{len(names)} elementwise losses: " + ", ".join(f"[`{n}`](#{n})" for n in names) + ".",
        "",
    ]
    for kind in overview_members:
        title, _ = OVERVIEWS[kind]
        md += [f"## {title}", "", f"![{title}]({image_prefix}overview_{kind}.png)", ""]
    for family, members in by_family.items():
        md += [f"## {family.capitalize()} losses", ""]
        for name in members:
            spec = jaxloss.REGISTRY[name]
            summary = (spec.fn.__doc__ or "").strip().splitlines()[0] if spec.fn.__doc__ else ""
            md += [f"### {name}", "", summary, ""]
            formula = first_formula(spec.fn.__wrapped_kernel__.__doc__)  # the source (reST) docstring
            if formula:
                md += ["$$", formula, "$$", ""]
            hp = ", ".join(f"`{k}={v!r}`" for k, v in {**spec.hparams, **spec.static}.items())
            ref = f"[`jaxloss.{name}`][jaxloss.{spec.fn.__module__.split('.')[-1]}.{name}]"
            md += [f"API: {ref}" + (f"; options {hp}" if hp else "") + ".", ""]
            md += [f"![{name} and its derivative]({image_prefix}{name}.png)", ""]
    return "\n".join(md) + "\n", pngs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Generate the loss/derivative gallery.")
    parser.add_argument("--out", type=Path, required=True, help="output directory (gallery.md + gallery/*.png)")
    parser.add_argument("--only", nargs="+", metavar="LOSS", help="draw only these losses")
    args = parser.parse_args(argv)
    md, pngs = build(args.out, only=args.only)
    (args.out / "gallery.md").write_text(md)
    print(f"{len(pngs)} plots and gallery.md written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
