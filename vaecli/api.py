"""The Python API: a loaded model with sentence-level methods (the CLI is a thin layer over these).

    from vaecli import TextVAE
    vae = TextVAE.from_pretrained("vae-model")
    z = vae.encode(["a sentence", "another one"])   # (2, d) float32
    vae.decode(z)                                    # ["a sentence", "another one"] once trained
"""

from __future__ import annotations

from typing import Sequence, overload

import numpy as np

from vaecli import infer
from vaecli.config import SAMPLE_NO_REPEAT_NGRAM
from vaecli.model import VAEModel


class TextVAE(VAEModel):
    """A text VAE; `from_pretrained(dir)` loads a `vae finetune` output directory."""

    @overload
    def encode(self, texts: str, sample: bool = ..., seed: int | None = ...) -> np.ndarray: ...
    @overload
    def encode(self, texts: Sequence[str], sample: bool = ..., seed: int | None = ...) -> np.ndarray: ...

    def encode(self, texts, sample=False, seed=None):
        """mu (or, with sample, a draw of z) for a str -> (d,), for a list -> (n, d)."""
        single = isinstance(texts, str)
        enc = infer.encode(self, [texts] if single else list(texts))
        z = infer.sample_posterior(enc, seed=seed) if sample else enc.mu
        return z[0] if single else z

    def decode(self, z: np.ndarray, beam: int = 1, sample: bool = False, top_p: float = 1.0,
               temperature: float = 1.0, seed: int | None = None, no_repeat_ngram: int = 0) -> list[str]:
        """One sentence per vector ((d,) or (n, d)); no_repeat_ngram = n forbids repeating any n tokens."""
        return infer.decode(self, z, beam=beam, sample=sample, top_p=top_p, temperature=temperature, seed=seed,
                            no_repeat_ngram=no_repeat_ngram)

    def sample(self, n: int = 1, temperature: float = 1.0, seed: int | None = None,
               no_repeat_ngram: int = SAMPLE_NO_REPEAT_NGRAM, **decode_args) -> list[str]:
        """n sentences decoded from z ~ N(0, t^2 I), none repeating 4 tokens of its own (no_repeat_ngram=0: off)."""
        return infer.decode(self, infer.prior(self, n, temperature, seed), no_repeat_ngram=no_repeat_ngram, **decode_args)

    def interpolate(self, a: str, b: str, steps: int = 5, slerp: bool = False, **decode_args) -> list[str]:
        """Sentences along the path from a's encoding to b's (both ends included)."""
        mu = self.encode([a, b])
        _, points = infer.path(mu[0], mu[1], steps, slerp)
        return infer.decode(self, points, **decode_args)

    def paraphrase(self, text: str, n: int = 5, scale: float = 1.0, seed: int | None = None, **decode_args) -> list[str]:
        """Up to n distinct sentences from around text's posterior, text itself left out."""
        return infer.paraphrase(self, text, n, scale=scale, seed=seed, **decode_args)

    def steer(self, text: str, source: Sequence[str], target: Sequence[str], alpha: float = 1.0, **decode_args) -> str:
        """text moved by alpha along mean(target) - mean(source), decoded."""
        z = self.encode(text) + alpha * infer.attribute_vector(self, source, target)
        return infer.decode(self, z, **decode_args)[0]

    def analogy(self, a: str, b: str, c: str, **decode_args) -> str:
        """c + (b - a), decoded: a is to b as c is to ..."""
        mu = self.encode([a, b, c])
        return infer.decode(self, mu[2] + mu[1] - mu[0], **decode_args)[0]
