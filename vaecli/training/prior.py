"""After training: the aggregate posterior of the kept model over (a seeded sample of) the training sentences."""

from __future__ import annotations

import numpy as np

from vaecli.inference.latent import encode_ids
from vaecli.modeling.prior import AggregatePrior
from vaecli.modeling.vae import VAEModel
from vaecli.training.data import Corpus


def fit_aggregate_prior(model: VAEModel, data: Corpus, seed: int, limit: int) -> AggregatePrior:
    """A Gaussian with the mean and covariance of mu over at most `limit` training sentences (drawn with `seed`)."""
    rows = np.sort(np.random.default_rng(seed).permutation(len(data))[:limit])
    return AggregatePrior.fit(encode_ids(model, data.ids(rows)).mu)
