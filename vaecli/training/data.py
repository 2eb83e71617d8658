"""Training data: a corpus read through `datasets` and tokenised (cached), its batches, token deletion.

Batches come from `modeling.tokens.length_batches`; their order depends only on (seed, phase,
epoch): a resumed run sees exactly the batches the interrupted one would have seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from vaecli.files.corpus import read_sentences_dataset
from vaecli.modeling.randomness import rand
from vaecli.modeling.tokens import pad_batch, tokenize_rows


class Corpus:
    """Tokenised sentences, fetched by index.

    Rows live in a memory-mapped Arrow table (`datasets`) or, for small in-memory sets, a list: a
    million-line corpus costs disk cache, not RAM. `lengths` (token counts) is a numpy array.
    """

    def __init__(self, rows: Any, lengths: np.ndarray, blank: int = 0, truncated: int = 0, targets: Any = None) -> None:
        self.rows, self.lengths, self.blank, self.truncated = rows, np.asarray(lengths, dtype=np.int64), blank, truncated
        self.targets = targets
        """The decoder's own token ids per row (encoder + causal-LM models), else None: targets = inputs."""

    @classmethod
    def from_ids(cls, ids: list[list[int]], blank: int = 0, truncated: int = 0, targets: list[list[int]] | None = None) -> Corpus:
        return cls(ids, np.array([len(r) for r in ids], dtype=np.int64), blank, truncated, targets)

    def __len__(self) -> int:
        return len(self.lengths)

    def ids(self, indices: Sequence[int]) -> list[list[int]]:
        if isinstance(self.rows, list):
            return [self.rows[i] for i in indices]
        return self.rows[[int(i) for i in indices]]["input_ids"]

    def batch(self, indices: Sequence[int], pad_id: int, target_pad_id: int | None = None) -> dict[str, torch.Tensor]:
        """Padded input_ids / attention_mask, and target_ids / target_mask when the decoder has its own tokens."""
        batch = pad_batch(self.ids(indices), pad_id)
        if self.targets is not None:
            rows = [self.targets[i] for i in indices] if isinstance(self.targets, list) else self.targets[[int(i) for i in indices]]["target_ids"]
            padded = pad_batch(rows, pad_id if target_pad_id is None else target_pad_id)
            batch.update(target_ids=padded["input_ids"], target_mask=padded["attention_mask"])
        return batch

    def split(self, n: int) -> tuple[Corpus, Corpus]:
        """(all but the last n rows, the last n rows); counts stay with the first part."""
        cut = len(self) - n

        def parts(rows: Any) -> tuple[Any, Any]:
            if rows is None:
                return None, None
            if isinstance(rows, list):
                return rows[:cut], rows[cut:]
            return rows.select(range(cut)), rows.select(range(cut, len(self)))

        (head, tail), (t_head, t_tail) = parts(self.rows), parts(self.targets)
        return Corpus(head, self.lengths[:cut], self.blank, self.truncated, t_head), Corpus(tail, self.lengths[cut:], targets=t_tail)


def load_corpus(path: str | Path, tokenizer: Any, max_length: int, limit: int | None = None,
                targets: Callable[[list[str], int], list[list[int]] | None] | None = None, fmt: str | None = None,
                column: str | None = None, split: str = "train", config: str | None = None) -> Corpus:
    """Read a corpus through `datasets` (files.corpus: any format, one text column), skip blank or null
    sentences (counted), tokenise (cached on disk).

    `targets(texts, max_length)`, when it returns ids, gives the decoder's own tokens of each sentence
    (a model whose decoder has another tokenizer); they are stored beside the encoder's.
    """
    read = read_sentences_dataset(str(path), fmt, column, split=split, config=config)
    ds, blank = read.dataset, read.skipped
    if len(ds) == 0:
        return Corpus.from_ids([], blank)
    if limit is not None and len(ds) > limit:
        ds = ds.select(range(limit))

    def encode(batch: dict[str, list[str]]) -> dict[str, Any]:
        texts = [t.strip() for t in batch["text"]]
        ids, cut = tokenize_rows(tokenizer, texts, max_length)
        row = {"input_ids": ids, "length": [len(r) for r in ids], "cut": cut}
        target = targets(texts, max_length) if targets is not None else None
        if target is not None:
            row["target_ids"] = target
        return row

    # Fingerprinting hashes the tokenizer and max_length, so the cache is reused only when both match.
    ds = ds.map(encode, batched=True, batch_size=1000, remove_columns=["text"])
    # Arrow -> numpy without Python objects (np.asarray on a datasets Column takes ~60 us per row).
    table = ds.with_format("arrow", columns=["length", "cut"])[:]
    lengths, cut = table.column("length").to_numpy(), table.column("cut").to_numpy(zero_copy_only=False)
    target_rows = ds.select_columns(["target_ids"]) if "target_ids" in ds.column_names else None
    return Corpus(ds.select_columns(["input_ids"]), lengths, blank, int(np.sum(cut)), target_rows)


class Batches(torch.utils.data.Sampler):
    """A fixed list of index batches as a batch sampler (accelerate shards it by `batch_size`)."""

    def __init__(self, batches: list[Any], batch_size: int) -> None:
        self.batches, self.batch_size, self.drop_last = batches, batch_size, False

    def __iter__(self):
        return (list(map(int, batch)) for batch in self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def delete_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    p: float,
    pad_id: int,
    protected: Sequence[int] = (),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Delete each real, non-special token with probability p; the survivors move left, ids and mask together.

    Returns new (input_ids, attention_mask) of the same shape; deleted positions become padding at the
    end of the row. Targets are not touched: callers keep the clean ids for the decoder.
    """
    if p <= 0:
        return input_ids, attention_mask
    real = attention_mask.bool()
    special = torch.zeros_like(real)
    for token in protected:
        special |= input_ids == token
    drop = (rand(input_ids.shape, generator, input_ids.device) < p) & real & ~special
    keep = real & ~drop
    # A stable sort of "not kept" moves kept tokens to the front in their original order.
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    new_ids = torch.gather(input_ids, 1, order)
    kept = keep.sum(dim=1, keepdim=True)
    new_mask = (torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0) < kept).long()
    new_ids = new_ids.masked_fill(new_mask == 0, pad_id)
    return new_ids, new_mask
