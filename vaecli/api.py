"""The Python API: a loaded model with sentence-level methods. Every latent command of the CLI goes through these.

    from vaecli import TextVAE
    vae = TextVAE.from_pretrained("vae-model")
    z = vae.encode(["a sentence", "another one"])   # (2, d) float32
    vae.decode(z)                                    # ["a sentence", "another one"] once trained
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Literal, Sequence, overload

import numpy as np

from vaecli.config import DECODE_BEAM, DECODE_RERANK, ENCODE_REFINE, SAMPLE_NO_REPEAT_NGRAM
from vaecli.inference import latent as infer
from vaecli.inference.latent import Encoded
from vaecli.modeling.vae import VAEModel

PriorKind = Literal["aggregate", "standard"]


class TextVAE(VAEModel):
    """A text VAE; `from_pretrained(dir)` loads a `vae finetune` output directory."""

    @overload
    def encode(self, texts: str, sample: bool = ..., seed: int | np.random.Generator | None = ..., refine: int = ...) -> np.ndarray: ...
    @overload
    def encode(self, texts: Sequence[str], sample: bool = ..., seed: int | np.random.Generator | None = ..., refine: int = ...) -> np.ndarray: ...

    def encode(self, texts, sample=False, seed=None, refine=ENCODE_REFINE):
        """The encoding (or, with sample, a draw of z around it) for a str -> (d,), for a list -> (n, d): mu, moved by
        `refine` gradient steps toward a z that gives the text back (inference.refine; 0: mu as the encoder gives it)."""
        single = isinstance(texts, str)
        enc = self.posterior_of([texts] if single else list(texts), refine)
        z = enc.sample(seed=seed) if sample else enc.mu
        return z[0] if single else z

    def posterior_of(self, texts: Sequence[str], refine: int = ENCODE_REFINE) -> Encoded:
        """q(z|x) of each text: mu (refined by `refine` steps, as encode) and logvar (n, d) float32 in input order, and how
        many texts were truncated."""
        return infer.encode(self, list(texts), refine=refine)

    def decode(self, z: np.ndarray, beam: int = DECODE_BEAM, sample: bool = False, top_p: float = 1.0,
               temperature: float = 1.0, seed: int | None = None, no_repeat_ngram: int = 0, rerank: bool = DECODE_RERANK) -> list[str]:
        """One sentence per vector ((d,) or (n, d)), by beam search of width `beam` (1: greedy); no_repeat_ngram = n forbids
        repeating any n tokens; `rerank`: the encoder chooses among the beam's hypotheses near the best (inference.rerank)."""
        return infer.decode(self, z, beam=beam, sample=sample, top_p=top_p, temperature=temperature, seed=seed,
                            no_repeat_ngram=no_repeat_ngram, rerank=rerank)

    def decode_stream(self, vectors: Iterable[np.ndarray], **decode_args: Any) -> Iterator[list[str]]:
        """decode() over arrays that may still be arriving, a batch of sentences at a time as soon as it is
        decoded; sampling draws from one seeded stream across all of them."""
        return infer.decode_batches(self, vectors, **decode_args)

    def prior(self, n: int, temperature: float = 1.0, seed: int | np.random.Generator | None = None, kind: PriorKind = "aggregate") -> np.ndarray:
        """n draws of z: from the training sentences' aggregate posterior (`aggregate`, when the model directory
        has one; else N(0, I)), or from N(0, I) (`standard`); temperature t scales the spread."""
        if kind not in ("aggregate", "standard"):  # a typo must not quietly sample N(0, I)
            raise ValueError(f"prior must be 'aggregate' or 'standard', not {kind!r}")
        if kind == "aggregate" and self.aggregate_prior is not None:
            return self.aggregate_prior.draw(n, temperature, seed)
        return infer.prior(self, n, temperature, seed)

    def prior_batches(self, n: int, temperature: float = 1.0, seed: int | None = None, kind: PriorKind = "aggregate",
                      batch: int = infer.BATCH) -> Iterator[np.ndarray]:
        """prior() in pieces of at most `batch` draws, the same draws as at once: memory stays bounded for any n."""
        rng = np.random.default_rng(seed)
        for start in range(0, n, batch):
            yield self.prior(min(batch, n - start), temperature, rng, kind)

    def sample(self, n: int = 1, temperature: float = 1.0, seed: int | None = None, prior: PriorKind = "aggregate",
               no_repeat_ngram: int = SAMPLE_NO_REPEAT_NGRAM, beam: int = 1, **decode_args: Any) -> list[str]:
        """n sentences decoded (greedy unless `beam`) from draws of the prior (see prior()), none repeating 4 tokens of its own
        (no_repeat_ngram=0: off)."""
        return self.decode(self.prior(n, temperature, seed, prior), no_repeat_ngram=no_repeat_ngram, seed=seed, beam=beam, **decode_args)

    def path(self, a: str, b: str, steps: int = 5, slerp: bool = False, batch: int = infer.BATCH,
             refine: int = ENCODE_REFINE) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(t, vectors) in pieces of at most `batch` of the `steps` points from a's encoding to b's (refined as encode),
        both ends exactly included."""
        if steps < 2:
            raise ValueError(f"a path has both ends: steps must be at least 2, not {steps}")
        mu = self.encode([a, b], refine=refine)
        for start in range(0, steps, batch):
            yield infer.path(mu[0], mu[1], steps, slerp, start, start + batch)

    def interpolate(self, a: str, b: str, steps: int = 5, slerp: bool = False, refine: int = ENCODE_REFINE, **decode_args: Any) -> list[str]:
        """Sentences along the path from a's encoding to b's (both ends included)."""
        points = (p for _, p in self.path(a, b, steps, slerp, refine=refine))
        return [text for texts in self.decode_stream(points, **decode_args) for text in texts]

    def paraphrase(self, text: str, n: int = 5, scale: float = 1.0, seed: int | None = None, refine: int = 0,
                   **decode_args: Any) -> list[str]:
        """Up to n distinct sentences decoded from around text's encoding (the encoder's mu; `refine` > 0 refines it as
        encode does), text itself left out, the nearest first: z drawn at `scale` times PARAPHRASE_RADIUS (a quarter) of
        the prior's spread, widened while fewer than n come out. Not refined by default: a refined encoding sits deep in
        its sentence's basin, and around a short one the quick start's model found no other sentence (README, paraphrase)."""
        return infer.paraphrase(self, text, n, scale=scale, seed=seed, refine=refine, **decode_args)

    def steer(self, text: str, source: Sequence[str], target: Sequence[str], alpha: float = 1.0, refine: int = ENCODE_REFINE,
              **decode_args: Any) -> str:
        """text's encoding (refined as encode) moved by alpha along mean(target) - mean(source) (the encoder's mu, not
        refined: a mean over many sentences), decoded."""
        z = self.encode(text, refine=refine) + alpha * infer.attribute_vector(self, source, target)
        return self.decode(z, **decode_args)[0]

    def analogy(self, a: str, b: str, c: str, refine: int = ENCODE_REFINE, **decode_args: Any) -> str:
        """c + (b - a) of their encodings (refined as encode), decoded: a is to b as c is to ..."""
        mu = self.encode([a, b, c], refine=refine)
        return self.decode(mu[2] + mu[1] - mu[0], **decode_args)[0]
