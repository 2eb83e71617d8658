"""The aggregate posterior as a prior to sample from: a full-covariance Gaussian fitted to the training set's mu.

A latent that carries a sentence's words has a high KL: the encodings of real sentences fill only a
small, correlated part of N(0, I), and a draw from N(0, I) lands between them, where the decoder has
never been and writes noise. Drawn instead from a Gaussian with the mean and covariance of the
training sentences' mu, z lands where sentences are (measured: README, "Latent size, KL and samples").
It is fitted once, after training, and saved beside the weights (layout.PRIOR_NAME).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaecli.errors import ModelDirError

JITTER = 1e-5  # added to the covariance's diagonal: a dimension with no spread must not break the factorisation


@dataclass
class AggregatePrior:
    """N(mean, L L^T) over z; `count` training sentences fitted it."""

    mean: np.ndarray
    scale_tril: np.ndarray
    count: int

    @classmethod
    def fit(cls, mu: np.ndarray) -> AggregatePrior:
        """Mean and covariance of the rows of mu (n, d); n >= 2."""
        mu = np.asarray(mu, dtype=np.float64)
        if mu.ndim != 2 or len(mu) < 2:
            raise ValueError(f"fitting a prior needs at least 2 encodings, got shape {mu.shape}")
        cov = np.cov(mu, rowvar=False).reshape(mu.shape[1], mu.shape[1]) + JITTER * np.eye(mu.shape[1])
        return cls(mu.mean(axis=0).astype(np.float32), np.linalg.cholesky(cov).astype(np.float32), len(mu))

    def draw(self, n: int, temperature: float = 1.0, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """n draws, (n, d) float32; temperature t scales the spread around the mean (t^2 times the covariance)."""
        eps = np.random.default_rng(seed).standard_normal((n, len(self.mean)))
        return (self.mean + temperature * eps @ self.scale_tril.T).astype(np.float32)

    def save(self, path: Path) -> None:
        from safetensors.numpy import save

        from vaecli.files.atomic import atomic_write_bytes

        atomic_write_bytes(path, save({"mean": self.mean, "scale_tril": self.scale_tril}, metadata={"count": str(self.count)}))

    @classmethod
    def load(cls, path: Path, dim: int) -> AggregatePrior:
        """The prior saved in `path` for a latent of size dim; a broken or mismatched file is a ModelDirError."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "np") as f:
                mean, tril, count = f.get_tensor("mean"), f.get_tensor("scale_tril"), int((f.metadata() or {}).get("count", 0))
        except (SafetensorError, OSError, ValueError, KeyError) as e:
            raise ModelDirError(f"{path} is corrupt or incomplete ({e}); delete it to sample from N(0, I)") from None
        if mean.shape != (dim,) or tril.shape != (dim, dim) or not (np.isfinite(mean).all() and np.isfinite(tril).all()):
            raise ModelDirError(f"{path} does not fit the model's latent of {dim} dimensions; delete it to sample from N(0, I)")
        return cls(mean.astype(np.float32), tril.astype(np.float32), count)
