"""Is generated text fluent? Measured without a human, on the decoder's own terms.

- fluency:  NLL per token under the decoder alone, z not given (`VAEModel.unconditional_nll`; for a
            causal LM whose weights stayed frozen, the pretrained LM's judgement). Compare it with the
            same for real held-out sentences: a reconstruction or a sample that reads like them scores alike.
- at limit: the share of texts that never ended (no end token within max_length): rambling.
- words:    mean whitespace words, against the data's.
- distinct-2: distinct word bigrams over all bigrams of the set (low: the same phrases again and again).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from vaecli.inference.generate import generate
from vaecli.modeling.tokens import length_batches, pad_batch
from vaecli.modeling.vae import VAEModel

BATCH = 64


@torch.inference_mode()
def fluency(model: VAEModel, texts: Sequence[str], batch_size: int = BATCH) -> float:
    """Mean NLL per target token (the end token counted) of `texts` under the decoder without z; nan for no texts."""
    if not texts:  # a tokenizer refuses an empty batch
        return float("nan")
    ids = model.family.target_ids(list(texts), model.config.max_length)
    if ids is None:  # one tokenizer for both sides (an encoder-decoder)
        from vaecli.modeling.tokens import tokenize

        ids, _ = tokenize(model.decoder_tokenizer, list(texts), model.config.max_length)
    total = tokens = 0.0
    for rows in length_batches([len(r) for r in ids], batch_size, 0, 0, shuffle=False):
        batch = pad_batch([ids[i] for i in rows], model.pad_id)
        nll, count = model.unconditional_nll(batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device))
        total, tokens = total + float(nll.sum()), tokens + float(count.sum())
    return total / tokens if tokens else float("nan")


def distinct_2(texts: Sequence[str]) -> float:
    """Distinct word bigrams / all word bigrams over the texts (lower-cased); nan without any bigram."""
    bigrams = [tuple(pair) for t in texts for pair in zip(t.lower().split(), t.lower().split()[1:])]
    return len(set(bigrams)) / len(bigrams) if bigrams else float("nan")


@torch.inference_mode()
def generated_quality(model: VAEModel, z: np.ndarray, no_repeat_ngram: int = 0, batch_size: int = BATCH) -> tuple[list[str], dict[str, float]]:
    """Greedy texts from each row of z, and their fluency, share at the length limit, mean words and distinct-2."""
    limit = model.config.max_length
    texts, at_limit = [], 0
    for start in range(0, len(z), batch_size):
        chunk = torch.as_tensor(np.asarray(z[start : start + batch_size], dtype=np.float32), device=model.device)
        ids = generate(model, chunk, limit, no_repeat_ngram=no_repeat_ngram)
        at_limit += sum(len(row) >= limit for row in ids)
        texts += [t.strip() for t in model.decoder_tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return texts, {
        "fluency": fluency(model, [t for t in texts if t]),
        "at_limit": at_limit / max(len(texts), 1),
        "words": float(np.mean([len(t.split()) for t in texts])) if texts else float("nan"),
        "distinct2": distinct_2(texts),
    }


def midpoints(mu: np.ndarray, pairs: int, seed: int = 0) -> np.ndarray:
    """The midpoints of `pairs` random pairs of distinct rows of mu: where an interpolation must not fall into a hole."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(mu), pairs)
    b = (a + rng.integers(1, len(mu), pairs)) % len(mu)
    return ((mu[a] + mu[b]) / 2).astype(np.float32)
