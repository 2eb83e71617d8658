"""Corpora in the formats people have them: text, CSV / TSV, JSON lines / JSON, Parquet, a `datasets.save_to_disk`
folder, or (only when named, with the hub reachable) a hub dataset.

Everything goes through `datasets`, which reads each format into a memory-mapped Arrow table cached on
disk: a million-row Parquet file is never held as Python objects. The sentences are one column:
`--column NAME` (nested JSON keys as `a.b`), else the one string column there is. A null, empty or
blank cell is skipped and counted, as a blank line of a text file is. Every problem is one InputError line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vaecli.config import CORPUS_FORMATS
from vaecli.errors import InputError
from vaecli.files.text import check_text_file

EXTENSIONS = {".txt": "txt", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
TEXT = "text"  # the column that holds the sentences once a corpus is read


@dataclass
class Sentences:
    """A corpus read: a datasets.Dataset whose `text` column holds the sentences (kept columns beside it)."""

    dataset: Any
    skipped: int
    """Null, empty or blank cells (blank lines of a text file)."""
    kept: dict[str, str] = field(default_factory=dict)
    """Each column to keep -> the dataset column that holds it (the sentences' own column is `text` once read)."""


def corpus_format(source: str, fmt: str | None, option: str | None = "--format") -> str:
    """The format of a corpus: --format, else the file's extension, a save_to_disk folder, a pipe (text, as stdin), or
    (neither file nor folder, hub allowed) a hub name. `option`: the command's option that names a format, if it has one."""
    if fmt is not None:
        if fmt not in CORPUS_FORMATS:
            raise InputError(f"--format must be one of {', '.join(CORPUS_FORMATS)}, not {fmt!r}")
        return fmt
    path = Path(source)
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return "disk"
        raise InputError(f"{source} is a directory, but not one `datasets.save_to_disk` wrote; give a file or --format")
    if is_stream(path):
        return "txt"  # a pipe has no extension: one sentence per line, as stdin
    if path.suffix.lower() in EXTENSIONS:
        return EXTENSIONS[path.suffix.lower()]
    if not path.exists() and not source.startswith((".", "/", "~")) and os.environ.get("HF_HUB_OFFLINE", "") in ("", "0") and "/" in source:
        return "hub"
    if not path.exists():
        raise InputError(f"{source}: no such file")
    known = ", ".join(f for f in CORPUS_FORMATS if f != "hub")
    how = f"name the format with {option} ({known})" if option else f"give it one of the extensions {', '.join(EXTENSIONS)}"
    raise InputError(f"{source}: unknown extension {path.suffix or '(none)'!r}; {how}")


def is_stream(path: Path) -> bool:
    """A pipe or a device (`<(cmd)`, /dev/stdin): it exists, is neither a file nor a folder, and can be read once."""
    return path.exists() and not path.is_file() and not path.is_dir()


def check_corpora(sources: Sequence[str | None], fmt: str | None) -> None:
    """Each source exists, is a file (not a pipe) and has a known format; a text file is valid UTF-8 text (files.text). Fast: nothing is read
    but a text file's bytes, so a bad corpus is refused before any model loads."""
    for source in sources:
        if source and corpus_format(source, fmt) == "txt":
            if is_stream(Path(source)):  # datasets reads a corpus more than once
                raise InputError(f"{source} is a pipe, not a file: a training corpus is read more than once; save it to a file first")
            check_text_file(source)


def read_sentences_dataset(source: str, fmt: str | None = None, column: str | None = None, keep: Sequence[str] = (),
                           split: str = "train", config: str | None = None) -> Sentences:
    """The corpus at `source` as Sentences (see module docstring); nothing is loaded into Python objects."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # it logs a parser's error before raising it: ours is the one line
    fmt = corpus_format(source, fmt)
    ds = _load(source, fmt, split, config)
    if fmt == "txt":
        column = TEXT
    ds = _flattened(ds)
    column = _pick_column(ds, column, source)
    keep = list(dict.fromkeys(keep))  # a name given twice is one column
    for name in keep:
        if name not in ds.column_names:
            raise InputError(f"{source} has no column {name!r} to keep (columns: {', '.join(ds.column_names)})")
    ds = ds.select_columns([column, *[k for k in keep if k != column]])
    if column != TEXT:
        if TEXT in ds.column_names:
            ds = ds.rename_column(TEXT, f"{TEXT}_")
        ds = ds.rename_column(column, TEXT)
    # The sentences' column may be kept too (it is `text` now), and a kept column named `text` was renamed above.
    kept = {name: TEXT if name == column else f"{TEXT}_" if name == TEXT else name for name in keep}
    total = len(ds)
    ds = ds.filter(lambda batch: [isinstance(t, str) and bool(t.strip()) for t in batch[TEXT]], batched=True)
    return Sentences(ds, total - len(ds), kept)


def _load(source: str, fmt: str, split: str, config: str | None) -> Any:
    import datasets
    from datasets import load_dataset, load_from_disk

    try:
        if fmt == "disk":
            ds = load_from_disk(source)
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise InputError(f"{source} has no split {split!r} (splits: {', '.join(ds)})")
                ds = ds[split]
            return ds
        if fmt == "hub":
            return load_dataset(source, config, split=split)
        if fmt == "txt":
            check_text_file(source)
            if Path(source).stat().st_size == 0:
                # `datasets` cannot build a dataset from an empty file
                return datasets.Dataset.from_dict({TEXT: []}, features=datasets.Features({TEXT: datasets.Value("string")}))
            return load_dataset("text", data_files=source, split="train")
        if not Path(source).is_file():
            raise InputError(f"{source}: no such file")
        builder = {"csv": "csv", "tsv": "csv", "jsonl": "json", "json": "json", "parquet": "parquet"}[fmt]
        kwargs = {"delimiter": "\t"} if fmt == "tsv" else {}
        return load_dataset(builder, data_files=source, split="train", **kwargs)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 -- pandas, pyarrow and datasets each raise their own: one line, whatever it is
        raise InputError(f"{source} is not readable as {fmt}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    """The parser's own complaint, in words a user can act on where it is a known one."""
    cause = e
    while cause.__cause__ is not None or cause.__context__ is not None:  # datasets wraps the parser's error
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(cause).split()).split("Failed to read")[0].strip() or type(cause).__name__
    if quote := re.search(r"EOF inside string starting at row (\d+)", text):  # pandas counts rows from 0, the header included
        return f"a quote opened on line {int(quote.group(1)) + 1} is never closed"
    if "magic bytes not found" in text:
        return "not a Parquet file, or a truncated one"
    return text if len(text) <= 200 else text[:197] + "..."


def _flattened(ds: Any) -> Any:
    """Nested JSON objects become `a.b` columns."""
    if any(hasattr(feature, "keys") for feature in ds.features.values()):
        return ds.flatten()
    return ds


def _pick_column(ds: Any, column: str | None, source: str) -> str:
    from datasets import Value

    strings = [name for name, feature in ds.features.items() if isinstance(feature, Value) and feature.dtype in ("string", "large_string")]
    if column is not None:
        if column not in ds.column_names:
            raise InputError(f"{source} has no column {column!r} (columns: {', '.join(ds.column_names)})")
        if column not in strings:
            raise InputError(f"{source}: column {column!r} holds {ds.features[column]}, not text")
        return column
    if len(strings) == 1:
        return strings[0]
    listed = ", ".join(f"{name} ({ds.features[name]})" for name in ds.column_names)
    what = "no text column" if not strings else f"{len(strings)} text columns"
    raise InputError(f"{source} has {what}; choose one with --column (columns: {listed})")
