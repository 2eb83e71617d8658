"""Latent-space statistics over a whole evaluation set (definitions in README, after He et al. 2019).

All functions take every sentence's posterior at once: MI's aggregate posterior is the mixture over
the **whole** set, never one batch (the authors' code capped MI at log(batch size)).
"""

from __future__ import annotations

import math

import torch

from vaecli.modeling.randomness import randn

AU_THRESHOLD = 0.01


def active_units(mu: torch.Tensor, threshold: float = AU_THRESHOLD) -> int:
    """Dimensions whose variance of mu across sentences, Cov_x(mu_d), is at least `threshold`."""
    if mu.shape[0] < 2:
        return 0
    return int((mu.double().var(dim=0, unbiased=False) >= threshold).sum())


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None, chunk: int = 256) -> float:
    """I(x; z) = E_x E_{q(z|x)}[log q(z|x) - log q(z)] with q(z) = mean_n q(z|x_n), one z per sentence.

    Both log-densities are taken at the same sample z_n ~ q(z|x_n) (their noise cancels: identical
    posteriors give exactly 0); log q(z) is a logsumexp over all N posteriors of the set.
    """
    mu, logvar = mu.double(), logvar.double()
    n = mu.shape[0]
    z = mu + torch.exp(0.5 * logvar) * randn(mu.shape, generator, mu.device, mu.dtype)
    var = logvar.exp()

    def log_density(points: torch.Tensor, m: torch.Tensor, lv: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return -0.5 * (((points - m) ** 2) / v + lv + math.log(2 * math.pi)).sum(-1)

    log_q_own = log_density(z, mu, logvar, var)
    log_qz = []
    for start in range(0, n, chunk):
        zc = z[start : start + chunk].unsqueeze(1)  # (c, 1, d) against all (1, N, d)
        dens = log_density(zc, mu.unsqueeze(0), logvar.unsqueeze(0), var.unsqueeze(0))
        log_qz.append(torch.logsumexp(dens, dim=1) - math.log(n))
    return float((log_q_own - torch.cat(log_qz)).mean())
