"""The Python API on the model the quick start trains (./vae-model, or $VAE_MODEL): every call of
the README's "Python API" section.

    python examples/api.py
"""

import os

import numpy as np
import torch

from vaecli import TextVAE

vae = TextVAE.from_pretrained(os.environ.get("VAE_MODEL", "vae-model"))

one = vae.encode("the old house")  # (d,) float32
many = vae.encode(["the old house", "the priest said mass"])  # (2, d): mu refined by 5 gradient steps toward the sentence
fast = vae.encode(["the old house", "the priest said mass"], refine=0)  # the encoder's mu alone: one pass, no steps
# the same vector alone or in a batch, to float32 precision: a batch of other shapes rounds differently through the LM's
# 30 layers (a quick-start model: up to 2.6e-5 on values up to 3.7); a row leaking into another would differ by far more
assert np.allclose(one, many[0], rtol=1e-4, atol=1e-4)
print("latent size:", one.shape[0], "refinement moved mu by", float(np.linalg.norm(many - fast, axis=1).mean()))
print("reconstructions:", vae.decode(many))
print("beam search:", vae.decode(vae.encode(["the old house", "a dog"]), beam=3))
print("interpolation:", vae.interpolate("the old house", "the priest said mass", steps=3))
print("slerp:", vae.interpolate("the old house", "a dog", steps=5, slerp=True))
print("prior samples:", vae.sample(2, seed=0))
enc = vae.posterior_of(["the old house"])  # mu, logvar, truncated
print("posterior:", enc.mu.shape, enc.sample(seed=0).shape)
print("streamed:", [texts for texts in vae.decode_stream(vae.prior_batches(3, seed=0, batch=2), beam=1)])
t, points = next(vae.path("the old house", "a dog", steps=5))
print("path:", t.tolist(), points.shape)
print("paraphrases:", vae.paraphrase("the old house", n=2, seed=0))
print("steered:", vae.steer("the old house", ["a sad day", "he wept"], ["a happy day", "he laughed"]))
print("analogy:", vae.analogy("the old house", "the old houses", "a dog"))

batch = vae.tokenize_batch(["the old house", "a dog"])  # encoder inputs, and the decoder's own targets
with torch.no_grad():
    out = vae(**batch)  # named parts: loss, rec, kl, mu, logvar, z, logits
print(f"forward: loss {out.loss.item():.2f}, rec {out.rec.item():.2f}, kl {out.kl.item():.2f}, z {tuple(out.z.shape)}")
