"""Sentences to padded token batches: tokenise (bounded), pad, and group rows of similar length.

Shared by training, inference and evaluation: every batch is padded on the right to its own longest
row, and rows of similar length go together, so little compute goes to padding.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

GROUP_BATCHES = 50  # batches per length-sorted group: enough to bucket, few enough to stay random


CHARS_PER_TOKEN = 16  # a text is cut to max_length * this many characters before tokenising


def tokenize_rows(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], list[bool]]:
    """Token ids of each text (special tokens included), truncated to max_length; and which were cut.

    A tokenizer builds every token of a text before truncating it (one 16 MB line took 3 GB), so a
    text longer than max_length * CHARS_PER_TOKEN characters is cut to that first (real text has
    far more than max_length tokens in that many characters), and counts as truncated.
    """
    if not texts:
        return [], []
    limit = max_length * CHARS_PER_TOKEN
    chopped = [i for i, t in enumerate(texts) if len(t) > limit]
    if chopped:
        texts = list(texts)
        for i in chopped:
            texts[i] = texts[i][:limit]
    ids = tokenizer(list(texts), truncation=True, max_length=max_length + 1)["input_ids"]
    long = [i for i, row in enumerate(ids) if len(row) > max_length]
    if long:
        redo = tokenizer([texts[i] for i in long], truncation=True, max_length=max_length)["input_ids"]
        for i, row in zip(long, redo):
            ids[i] = row
    cut = [False] * len(ids)
    for i in (*long, *chopped):
        cut[i] = True
    return ids, cut


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids of each text, truncated to max_length; and how many were cut."""
    ids, cut = tokenize_rows(tokenizer, texts, max_length)
    return ids, sum(cut)


def length_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[Any]:
    """Indices grouped into batches of similar length.

    With shuffle (training): a seeded permutation, cut into groups of GROUP_BATCHES batches, each group
    sorted by length and cut into batches, then the batch order shuffled; batches are int64 arrays
    (8 bytes an index, not a Python int's 36). Without: one sort by length, batches as lists (inference).
    """
    lengths = np.asarray(lengths)
    if not shuffle:
        order = np.argsort(-lengths, kind="stable")
        return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    group = batch_size * GROUP_BATCHES
    batches = []
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token id lists into input_ids and attention_mask tensors."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}
