"""The causal-LM defaults before issue 17, written once for the benchmarks whose README tables were
measured with them (each variant spells them out, so those tables reproduce under today's defaults)."""

BEFORE_ISSUE_17 = dict(latent_dim=32, layers="last", new_lr_scale=10.0, free_bits=3.0)
"""z of 32 dimensions pooled from the encoder's last layer, its new layers at 10x the learning rate, free bits 3."""
