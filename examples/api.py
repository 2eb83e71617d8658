"""The Python API on the model the quick start trains (./vae-model, or $VAE_MODEL).

    python examples/api.py
"""

import os

import numpy as np

from vaecli import TextVAE

vae = TextVAE.from_pretrained(os.environ.get("VAE_MODEL", "vae-model"))

one = vae.encode("the old house")  # (d,) float32
many = vae.encode(["the old house", "the priest said mass"])  # (2, d)
assert np.allclose(one, many[0], atol=1e-6)
print("latent size:", one.shape[0])
print("reconstructions:", vae.decode(many))
print("interpolation:", vae.interpolate("the old house", "the priest said mass", steps=3))
print("prior samples:", vae.sample(2, seed=0))
print("paraphrases:", vae.paraphrase("the old house", n=2, scale=2.0, seed=0))
