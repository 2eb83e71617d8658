"""Bytes in and out, without torch: sentences (text), latent vectors (jsonl, tsv, npy, safetensors), atomic writes."""
