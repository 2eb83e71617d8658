"""Batched latent operations on a loaded model: encode, decode, sample, interpolate, paraphrase, steer.

Sentences are encoded in batches sorted by length (little padding) and returned in input order.
Everything runs under `torch.inference_mode`. Vectors in and out are float32 numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from vaecli.config import DECODE_BEAM, DECODE_RERANK, PARAPHRASE_RADIUS
from vaecli.errors import InputError, VectorSizeError
from vaecli.inference.generate import generate
from vaecli.inference.refine import refine_rows
from vaecli.modeling.tokens import length_batches, pad_batch, tokenize
from vaecli.modeling.vae import VAEModel

BATCH = 64


@dataclass
class Encoded:
    """q(z|x) of some texts: mu and logvar (n, d) float32, and how many texts were cut to max_length."""

    mu: np.ndarray
    logvar: np.ndarray
    truncated: int

    def sample(self, scale: float = 1.0, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """A draw of z for each text (see sample_posterior)."""
        return sample_posterior(self, scale, seed)


def encode(model: VAEModel, texts: Sequence[str], batch_size: int = BATCH, refine: int = 0) -> Encoded:
    """Posterior mean and log-variance of each text, (n, d) float32, in input order; with `refine` > 0, mu is each
    text's mean moved by that many gradient steps toward a z that gives the text back (inference.refine)."""
    ids, truncated = tokenize(model.tokenizer, list(texts), model.config.max_length)
    enc = encode_ids(model, ids, truncated, batch_size)
    if refine > 0:
        targets = model.family.target_ids(list(texts), model.config.max_length) or ids
        enc.mu = refine_rows(model, enc.mu, targets, refine, batch_size)
    return enc


@torch.inference_mode()
def encode_ids(model: VAEModel, ids: Sequence[Sequence[int]], truncated: int = 0, batch_size: int = BATCH) -> Encoded:
    """encode() of texts already tokenised by the encoder's tokenizer."""
    d = model.config.latent_dim
    mu, logvar = np.zeros((len(ids), d), np.float32), np.zeros((len(ids), d), np.float32)
    for rows in length_batches([len(r) for r in ids], batch_size, 0, 0, shuffle=False):
        batch = pad_batch([ids[i] for i in rows], model.input_pad_id)
        m, lv = model.posterior(batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device))
        mu[rows], logvar[rows] = m.float().cpu().numpy(), lv.float().cpu().numpy()
    return Encoded(mu, logvar, truncated)


def sample_posterior(enc: Encoded, scale: float = 1.0, seed: int | np.random.Generator | None = None) -> np.ndarray:
    """z = mu + scale * sigma * eps for each row; `seed` may be a generator that goes on across calls."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal(enc.mu.shape).astype(np.float32)
    return (enc.mu + scale * np.exp(0.5 * enc.logvar) * eps).astype(np.float32)


def check_vectors(model: VAEModel, z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float32)
    if z.ndim == 1:
        z = z[None, :]
    d = model.config.latent_dim
    if z.ndim != 2:
        raise VectorSizeError(f"vectors must be one vector (d,) or rows (n, d), not an array of shape {z.shape}")
    if z.shape[1] != d:
        raise VectorSizeError(f"vectors have {z.shape[-1]} values, the model's latent has {d}")
    if not np.isfinite(z).all():  # the CLI's readers refuse these too; a NaN would decode to whatever the argmax of NaN is
        raise InputError(f"vector {int(np.flatnonzero(~np.isfinite(z).all(axis=1))[0])} holds NaN or infinity")
    return z


def decode_batches(
    model: VAEModel,
    vectors: Iterable[np.ndarray],
    beam: int = DECODE_BEAM,
    sample: bool = False,
    top_p: float = 1.0,
    temperature: float = 1.0,
    seed: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = BATCH,
    no_repeat_ngram: int = 0,
    rerank: bool = DECODE_RERANK,
) -> Iterator[list[str]]:
    """One sentence per row of each array in `vectors`, yielded a batch at a time as soon as it is decoded
    (an output can stream while its input still arrives): beam search (width DECODE_BEAM by default; 1: greedy) or nucleus
    sampling from one seeded stream across all batches; with no_repeat_ngram = n, no sentence repeats an
    n-token sequence of its own; with `rerank` (beam search), the encoder chooses among the beam's hypotheses (inference.rerank)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    limit = max_new_tokens or model.config.max_length
    for array in vectors:
        z = check_vectors(model, array)
        for start in range(0, len(z), batch_size):
            chunk = torch.from_numpy(z[start : start + batch_size]).to(model.device)
            ids = generate(model, chunk, limit, beam=beam, sample=sample, top_p=top_p, temperature=temperature, generator=generator,
                           no_repeat_ngram=no_repeat_ngram, rerank=rerank)
            yield [t.strip() for t in model.decoder_tokenizer.batch_decode(ids, skip_special_tokens=True)]


def decode(model: VAEModel, z: np.ndarray, **decode_args: Any) -> list[str]:
    """One sentence per row of z (see decode_batches for the options)."""
    return [text for batch in decode_batches(model, [z], **decode_args) for text in batch]


def prior(model: VAEModel, n: int, temperature: float = 1.0, seed: int | np.random.Generator | None = None) -> np.ndarray:
    """n draws of z ~ N(0, t^2 I); `seed` may be a generator that goes on across calls (draws in pieces are the
    draws made at once)."""
    rng = np.random.default_rng(seed)
    return (temperature * rng.standard_normal((n, model.config.latent_dim))).astype(np.float32)


def path(a: np.ndarray, b: np.ndarray, steps: int, slerp: bool = False, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`steps` points from a to b inclusive (linear, or spherical); returns (t values, vectors) of points
    start..stop-1 (all by default), so that a long path can be made a piece at a time."""
    stop = steps if stop is None else min(stop, steps)
    t = np.arange(start, stop) * (1.0 / (steps - 1))  # np.linspace(0, 1, steps)[start:stop], bit for bit, without the whole of it
    if stop == steps and len(t):
        t[-1] = 1.0
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if slerp:
        cos = np.dot(a64, b64) / max(np.linalg.norm(a64) * np.linalg.norm(b64), 1e-12)
        omega = np.arccos(np.clip(cos, -1.0, 1.0))
        if omega > 1e-6:
            w_a = np.sin((1 - t) * omega) / np.sin(omega)
            w_b = np.sin(t * omega) / np.sin(omega)
            points = w_a[:, None] * a64 + w_b[:, None] * b64
        else:
            slerp = False
    if not slerp:
        points = (1 - t)[:, None] * a64 + t[:, None] * b64
    points = points.astype(np.float32)
    if start == 0 and len(points):
        points[0] = a  # exactly the two encodings at the ends
    if stop == steps and len(points):
        points[-1] = b
    return t, points


def prior_spread(model: VAEModel) -> np.ndarray:
    """(d, d) Cholesky factor of the prior `sample` draws from: the aggregate posterior's when the model has one, else I."""
    if model.aggregate_prior is not None:
        return model.aggregate_prior.scale_tril
    return np.eye(model.config.latent_dim, dtype=np.float32)


WIDEN = 1.5
"""paraphrase's radius grows by this much each round that leaves it short of n distinct sentences."""


def paraphrase(model: VAEModel, text: str, n: int, scale: float = 1.0, seed: int | None = None, tries: int = 4, refine: int = 0,
               **decode_args) -> list[str]:
    """Up to n distinct sentences decoded from z = mu + r L eps around text's mu, the input itself left out; L is the
    prior's spread (prior_spread) and r = scale * PARAPHRASE_RADIUS, widened by WIDEN each round (2n draws a round,
    `tries` rounds) that leaves fewer than n. The nearest come first."""
    mu = encode(model, [text], refine=refine).mu
    spread = prior_spread(model)
    rng = np.random.default_rng(seed)
    seen = {" ".join(text.lower().split())}
    found: list[str] = []
    for round_ in range(tries):
        eps = rng.standard_normal((n * 2, mu.shape[1])).astype(np.float32)
        z = mu + (scale * PARAPHRASE_RADIUS * WIDEN**round_) * (eps @ spread.T)
        for sentence in decode(model, z.astype(np.float32), **decode_args):
            key = " ".join(sentence.lower().split())
            if sentence and key not in seen:
                seen.add(key)
                found.append(sentence)
                if len(found) == n:
                    return found
    return found


def attribute_vector(model: VAEModel, source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """Mean encoding of `target` minus mean encoding of `source`."""
    if not len(source) or not len(target):
        raise InputError(f"steering needs sentences on both sides ({len(source)} from, {len(target)} to)")
    return (encode(model, target).mu.mean(axis=0) - encode(model, source).mu.mean(axis=0)).astype(np.float32)
