"""`vae plot`: PNG figures of a run: training curves and a 2-D PCA map of encoded sentences.

matplotlib (an optional extra, `pip install 'vaecli[plot]'`) draws them with the non-interactive
Agg backend, so no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vaecli.files.text import read_records
from vaecli.modeling.layout import METRICS_NAME

BetaCurve = tuple[list[int], list[float]]  # (global steps, beta at each)

CURVES = [
    ("rec", "Rec (nats/sentence)"),
    ("kl", "KL (nats/sentence)"),
    ("beta", "beta"),
    ("mi", "MI (nats)"),
    ("au", "active units"),
    ("gap", "z-shuffle gap (nats)"),
    ("acc", "token accuracy from mu (teacher-forced)"),
]


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: plot a `vae finetune` output directory")
    return read_records(path)  # a live or killed run's torn last line is skipped


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(records: list[dict], out: Path, beta: Callable[[int], BetaCurve | None] | None = None) -> Path:
    """One panel per quantity; x = global step (phase 2 continues after phase 1's last step).

    `beta(offset)`, when given (the run's schedule, `training.schedule.beta_curve`), draws beta at
    every step; phase 2 starts after `offset` phase-1 steps.
    """
    plt = _pyplot()
    offset = max((r["step"] for r in records if r["phase"] == 1), default=0)

    def x(r: dict) -> int:
        return r["step"] + (offset if r["phase"] == 2 else 0)

    fig, axes = plt.subplots(2, 4, figsize=(17, 7))
    for ax in axes.flat[len(CURVES):]:
        ax.axis("off")
    for ax, (key, label) in zip(axes.flat, CURVES):
        drawn = False
        curve = beta(offset) if beta is not None and key == "beta" else None
        if curve is not None:
            ax.plot(*curve, "-", label="schedule, every step")
            drawn = True
        for kind, style in (("train", "-"), ("valid", "o-")):
            if curve is not None:
                break
            points = [(x(r), r[key]) for r in records if r["kind"] == kind and r.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, label=kind, markersize=3)
                drawn = True
        if offset:
            ax.axvline(offset, color="grey", linestyle=":", linewidth=1)
        ax.set_title(label)
        ax.set_xlabel("step (dotted: phase 1 | phase 2)")
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection onto the two leading principal components of the standardised dimensions; and the
    variance ratio they explain. Standardising first: a single dimension with a large spread (common
    in a VAE's mu) would otherwise be the whole map ("PC1 100%"), a line."""
    centred = vectors - vectors.mean(axis=0)
    std = centred.std(axis=0)
    centred = centred / np.where(std > 1e-8, std, 1.0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    explained = (s**2) / max(float((s**2).sum()), 1e-12)
    return centred @ vt[:2].T, explained[:2]


def short_label(text: str, width: int = 36) -> str:
    """At most `width` characters, cut at a word boundary with an ellipsis, never mid-word."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if text[width - 1] != " " and " " in cut:  # the cut falls inside a word: drop that word
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.") + "\u2026"


def label_points(points: np.ndarray, count: int, seed: int = 0, box: tuple[float, float] = (0.35, 0.05)) -> list[int]:
    """Up to `count` points, picked at random, whose labels do not overlap: a label is a box of
    `box` (width, height, as fractions of the points' span) to the right of its point."""
    if len(points) == 0:
        return []
    span = np.maximum(points.max(axis=0) - points.min(axis=0), 1e-12)
    scaled = (points - points.min(axis=0)) / span
    w, h = box
    chosen: list[int] = []
    for i in np.random.default_rng(seed).permutation(len(points)):
        if all(abs(scaled[i, 0] - scaled[j, 0]) >= w or abs(scaled[i, 1] - scaled[j, 1]) >= h for j in chosen):
            chosen.append(int(i))
            if len(chosen) == count:
                break
    return chosen


def plot_latent_map(mu: np.ndarray, texts: Sequence[str], out: Path, labels: int = 15) -> Path:
    """Scatter of the PCA map of the standardised mu, with a few sentences written next to their points."""
    plt = _pyplot()
    points, explained = pca_2d(mu)
    fig, ax = plt.subplots(figsize=(11, 8))
    ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.35, color="tab:blue", linewidths=0)
    chosen = label_points(points, labels)
    ax.scatter(points[chosen, 0], points[chosen, 1], s=18, color="tab:red")
    for i in chosen:
        ax.annotate(short_label(texts[i]), points[i], xytext=(4, 3), textcoords="offset points", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))
    ax.margins(x=0.25, y=0.08)  # room for the labels of the rightmost points
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of the variance of the standardised dimensions)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})" if len(explained) > 1 else "PC2")
    ax.set_title(f"posterior means of {len(texts)} sentences: PCA of the standardised latent dimensions")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
