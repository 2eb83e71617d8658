"""Latent vector files for vaecli: the formats (jsonl, tsv, npy, safetensors) and writing them.

Reading them back is :mod:`vaecli.files.vector_reader`.

Shares the rules of :mod:`vaecli.files.text`: bad user input raises
:class:`vaecli.files.text.InputError` with a one-line message naming the source; bad
values from our own code (e.g. NaN vectors from the model) raise a plain
``ValueError``. Text formats are decoded and split into lines as in vaecli.files.text.

Vector formats (:func:`write_vectors` / :func:`read_vectors`)
    jsonl
        One object per line: ``{"text": ..., "z": [...], "logvar": [...]}``;
        "text" and "logvar" only when given, the vector key is ``key``. The
        reader takes the first of "z", "mu", "vector", or a bare JSON list;
        "logvar" is ignored on reading.
    tsv
        One row per vector: ``[text TAB] v1 ... vd [TAB lv1 ... lvd]``, i.e.
        the d logvar values, when given, follow the d vector values. In the
        text, backslash, tab, newline, CR and NUL are written as ``\\\\``,
        ``\\t``, ``\\n``, ``\\r``, ``\\0``; a text that would itself parse as a
        number (``"42"``, ``"nan"``) gets the empty escape ``\\&`` in front
        (as in troff), so a text we wrote is never mistaken for a value. Any
        other backslash sequence is read back unchanged.

        Reading, all rows must have the same number of fields k. The first
        column is text when (1) some row's first field is not a number, or
        (2) ``dim`` is given and k is dim+1 or 2*dim+1 but not dim or 2*dim
        (a foreign file whose texts all look like numbers). The remaining
        fields are the vector; with ``dim`` given, 2*dim values mean vector
        plus logvar and the logvar half is dropped. Without ``dim`` a logvar
        half cannot be recognised and is read as part of the vector.
    npy
        ``np.save`` of the float32 (n, d) array. Texts and logvar are not
        stored. Read with ``allow_pickle=False``: user files are never
        unpickled.
    safetensors
        Tensors ``{key: vectors, "logvar": logvar}``, metadata
        ``{"texts": <JSON list>}`` when texts are given.

Float text (jsonl, tsv) is ``repr()`` of the float32 value widened to a
Python float: the shortest string for that exact double. Parsing it as a
double and narrowing to float32 therefore restores the identical bits by
construction, without the double-rounding risk that the shorter
float32-shortest spelling ("0.1") would carry for readers that parse via
float64 (Python's ``float``, ``json``, NumPy all do).
"""

import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import PurePath
from typing import Any, BinaryIO, Literal, get_args

import numpy as np
import safetensors.numpy

__all__ = [
    "FORMATS",
    "Format",
    "format_of_path",
    "write_vectors",
]

Format = Literal["jsonl", "tsv", "npy", "safetensors"]
FORMATS: tuple[Format, ...] = get_args(Format)


def format_of_path(path: str | PurePath) -> Format | None:
    """The format a file's extension names (`z.npy` -> npy, `.jsonl`, `.tsv`, `.safetensors`), else None."""
    suffix = PurePath(path).suffix[1:].lower()
    return suffix if suffix in FORMATS else None  # type: ignore[return-value]


_BATCH = 1024  # rows encoded per write call: bounded memory, few syscalls
VECTOR_KEYS = ("z", "mu", "vector")  # what a reader takes as the vector, in this order
RESERVED_KEYS = ("text", "logvar", *VECTOR_KEYS)
"""A jsonl record's own keys: a kept column (`encode --keep`) under one of them would be read back as the text or the vector."""


# --------------------------------------------------------------------------- messages


def clip(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


# --------------------------------------------------------------------------- writing vectors

# ASCII-only so that e.g. Arabic-Indic digits, which float() accepts, count as text.
_NUMBER = re.compile(
    r"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf(?:inity)?)\s*",
    re.IGNORECASE | re.ASCII,
)
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "0": "\0", "&": ""}
_ESCAPE_RE = re.compile("[\\\\\t\n\r\0]")
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def is_number(field: str) -> bool:
    return _NUMBER.fullmatch(field) is not None


def _escape_field(text: str) -> str:
    """A kept column's value in a tsv row: tabs and line breaks escaped (only the text needs the number marker)."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], text)


def _escape_tsv(text: str) -> str:
    escaped = _escape_field(text)
    # The empty escape keeps a number-like text from being read back as a vector value.
    return "\\&" + escaped if is_number(escaped) else escaped


def unescape_tsv(field: str) -> str:
    return _UNESCAPE_RE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group()), field)


def _as_matrix(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (n, d) array, got shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be numeric, got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf, caught below
        array = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise ValueError(f"{what} row {int(np.argmax(bad))} contains NaN or infinite values")
    return array


def _write_lines(out: BinaryIO, lines: Iterable[str]) -> None:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= _BATCH:
            out.write("".join(batch).encode("utf-8"))
            batch.clear()
    if batch:
        out.write("".join(batch).encode("utf-8"))


def _jsonl_lines(
    z: np.ndarray, texts: list[str] | None, logvar: np.ndarray | None, key: str, extra: dict[str, list[Any]]
) -> Iterator[str]:
    # tolist() gives Python floats holding the exact float32 values; json writes them
    # with float.__repr__, i.e. the round-trip-exact spelling (see module doc).
    logvars = logvar.tolist() if logvar is not None else None
    for i, row in enumerate(z.tolist()):
        record: dict[str, Any] = {name: values[i] for name, values in extra.items()}
        if texts is not None:
            record["text"] = texts[i]
        record[key] = row
        if logvars is not None:
            record["logvar"] = logvars[i]
        yield json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"


def _tsv_lines(z: np.ndarray, texts: list[str] | None, logvar: np.ndarray | None, extra: dict[str, list[Any]]) -> Iterator[str]:
    logvars = logvar.tolist() if logvar is not None else None
    for i, row in enumerate(z.tolist()):
        fields = [_escape_field(str(values[i])) for values in extra.values()]
        fields += [_escape_tsv(texts[i])] if texts is not None else []
        fields.extend(map(repr, row))
        if logvars is not None:
            fields.extend(map(repr, logvars[i]))
        yield "\t".join(fields) + "\n"


def _write_npy(out: BinaryIO, z: np.ndarray) -> None:
    """np.save's bytes through out.write: np.save hands real files to ndarray.tofile, whose
    errors (a closed pipe, a full disk) lose their errno."""
    array = np.ascontiguousarray(z, dtype="<f4")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    out.write(header.getvalue())
    flat = memoryview(array.reshape(-1)).cast("B")
    step = 1 << 20
    for start in range(0, len(flat), step):
        out.write(flat[start : start + step])


def write_vectors(
    out: BinaryIO,
    vectors: np.ndarray,
    texts: Sequence[str] | None = None,
    fmt: Format = "jsonl",
    logvar: np.ndarray | None = None,
    key: str = "z",
    extra: dict[str, Sequence[Any]] | None = None,
) -> None:
    """Write (n, d) vectors (stored as float32) to the binary stream `out` in `fmt`;
    layouts in the module docstring. npy stores neither texts nor logvar. `extra` columns (a
    corpus's other columns, `encode --keep`) go into jsonl records and in front of tsv rows.

    Raises ValueError for non-finite values, mismatched shapes/lengths or an unknown fmt:
    these come from the caller's code, not from the user.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not key or key in ("text", "logvar"):
        raise ValueError(f"key {key!r} is reserved; use e.g. 'z' or 'mu'")
    z = _as_matrix(vectors, "vectors")
    lv = None if logvar is None else _as_matrix(logvar, "logvar")
    if lv is not None and lv.shape != z.shape:
        raise ValueError(f"logvar shape {lv.shape} differs from vectors shape {z.shape}")
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    text_list = None if texts is None else list(texts)
    if text_list is not None and len(text_list) != len(z):
        raise ValueError(f"{len(text_list)} texts for {len(z)} vectors")

    extra = {name: list(values) for name, values in (extra or {}).items()}
    if any(len(values) != len(z) for values in extra.values()) or (fmt == "jsonl" and set(RESERVED_KEYS) & set(extra)):
        raise ValueError(f"extra columns {list(extra)} must have one value per vector and, in jsonl, no reserved name")
    if extra and fmt not in ("jsonl", "tsv"):
        raise ValueError(f"extra columns go into jsonl or tsv, not {fmt}")
    if fmt == "jsonl":
        _write_lines(out, _jsonl_lines(z, text_list, lv, key, extra))
    elif fmt == "tsv":
        _write_lines(out, _tsv_lines(z, text_list, lv, extra))
    elif fmt == "npy":
        _write_npy(out, z)
    else:
        tensors = {key: z} if lv is None else {key: z, "logvar": lv}
        metadata = None if text_list is None else {"texts": json.dumps(text_list, ensure_ascii=False)}
        out.write(safetensors.numpy.save(tensors, metadata=metadata))
