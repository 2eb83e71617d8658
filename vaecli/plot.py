"""`vae plot`: PNG figures of a run: training curves and a 2-D PCA map of encoded sentences.

matplotlib (an optional extra, `pip install 'vaecli[plot]'`) draws them with the non-interactive
Agg backend, so no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

CURVES = [
    ("rec", "Rec (nats/sentence)"),
    ("kl", "KL (nats/sentence)"),
    ("beta", "beta"),
    ("mi", "MI (nats)"),
    ("au", "active units"),
    ("gap", "z-shuffle gap (nats)"),
]


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: plot a `vae finetune` output directory")
    from vaecli.io import read_records

    return read_records(path)  # a live or killed run's torn last line is skipped


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(records: list[dict], out: Path) -> Path:
    """One panel per quantity; x = global step (phase 2 continues after phase 1's last step)."""
    plt = _pyplot()
    offset = max((r["step"] for r in records if r["phase"] == 1), default=0)

    def x(r: dict) -> int:
        return r["step"] + (offset if r["phase"] == 2 else 0)

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (key, label) in zip(axes.flat, CURVES):
        drawn = False
        for kind, style in (("train", "-"), ("valid", "o-")):
            points = [(x(r), r[key]) for r in records if r["kind"] == kind and key in r]
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
    """Projection onto the two leading principal components; and the variance ratio they explain."""
    centred = vectors - vectors.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    explained = (s**2) / max(float((s**2).sum()), 1e-12)
    return centred @ vt[:2].T, explained[:2]


def plot_latent_map(mu: np.ndarray, texts: Sequence[str], out: Path, labels: int = 25) -> Path:
    """Scatter of the PCA map of mu, with a few sentences written next to their points."""
    plt = _pyplot()
    points, explained = pca_2d(mu)
    fig, ax = plt.subplots(figsize=(10, 8))
    lengths = np.array([len(t.split()) for t in texts])
    sc = ax.scatter(points[:, 0], points[:, 1], c=lengths, cmap="viridis", s=8, alpha=0.7)
    fig.colorbar(sc, ax=ax, label="words in sentence")
    step = max(1, len(texts) // labels)
    for i in range(0, len(texts), step):
        ax.annotate(texts[i][:40], points[i], fontsize=7, alpha=0.8)
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)" if len(explained) > 1 else "PC2")
    ax.set_title(f"posterior means of {len(texts)} sentences (PCA)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
