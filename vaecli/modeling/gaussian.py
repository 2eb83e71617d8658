"""The Gaussian arithmetic of the objective and the metrics: a diagonal posterior's KL from N(0, I) per dimension, the
free-bits KL term, and a diagonal Gaussian's log-density."""

from __future__ import annotations

import math

import torch


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) for each example and dimension, in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits_kl(kl_dims: torch.Tensor, lam: float) -> torch.Tensor:
    """The KL term under free bits, per dimension on the batch-averaged KL (as Optimus).

    Each dimension's KL, averaged over the batch, counts as at least `lam` nats: sum_d max(mean_b KL_bd, lam).
    A dimension below the floor gets no gradient from the KL, but one example's low KL is not floored
    on its own, so the floor is `lam * latent_dim` for the batch, not for each sentence.
    """
    per_dim = kl_dims.mean(dim=0)
    if lam <= 0:
        return per_dim.sum()
    return torch.clamp(per_dim, min=lam).sum()


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(dim=-1)
