"""Reading latent vector files (the formats of :mod:`vaecli.files.vectors`): whole, or streamed as they arrive.

Bad input raises InputError with one line naming the source and, for text formats, the line.
"""

import io
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

from vaecli.errors import InputError
from vaecli.files.streaming import numbered_pieces
from vaecli.files.text import STDIN_NAME, _one_line, _show, _split_lines, decode_text
from vaecli.files.vectors import FORMATS, VECTOR_KEYS, Format, clip, is_number, unescape_tsv

__all__ = ["read_vectors", "stream_vectors"]


def _to_float32(
    rows: np.ndarray | list[list[float]], name: str, where: Callable[[int], str]
) -> np.ndarray:
    """Narrow to a fresh C-contiguous float32 array; InputError naming the first non-finite row."""
    with np.errstate(over="ignore"):  # values beyond float32 range become inf, reported below
        array = np.array(rows, dtype=np.float32, order="C")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise InputError(
            f"{_show(name)} {where(int(np.argmax(bad)))}: NaN, infinite or out-of-float32-range value"
        )
    return array


def _check_dim(count: int, dim: int | None, name: str, where: str) -> None:
    if dim is not None and count != dim:
        raise InputError(f"{_show(name)} {where}: vector has {count} values, the model's latent has {dim}")


def _check_lengths(vectors: list[list[float]], linenos: list[int], name: str, dim: int | None) -> None:
    for vector, lineno in zip(vectors, linenos):
        _check_dim(len(vector), dim, name, f"line {lineno}")
        if len(vector) != len(vectors[0]):
            raise InputError(
                f"{_show(name)} line {lineno}: vector has {len(vector)} values "
                f"but line {linenos[0]} has {len(vectors[0])}"
            )


def _json_vector(values: Any, name: str, lineno: int) -> list[float]:
    where = f"{_show(name)} line {lineno}"
    if not isinstance(values, list) or not values:
        raise InputError(f"{where}: the vector must be a non-empty JSON list of numbers")
    for index, value in enumerate(values, start=1):
        # bool is an int subclass; true/false in a vector is a mistake, not 1/0.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: value {index} is {clip(json.dumps(value))}, not a number")
    try:
        return [float(value) for value in values]
    except OverflowError:  # a huge JSON integer
        raise InputError(f"{where}: value out of float32 range") from None


def _read_jsonl(
    lines: list[tuple[int, str]], name: str, dim: int | None
) -> tuple[np.ndarray, list[str] | None]:
    vectors: list[list[float]] = []
    texts: list[str | None] = []
    for lineno, line in lines:
        where = f"{_show(name)} line {lineno}"
        try:
            record = json.loads(line)
        except ValueError as err:
            message = getattr(err, "msg", _one_line(err))
            raise InputError(f"{where}: bad JSON ({message}, column {getattr(err, 'colno', '?')})") from None
        except RecursionError:
            raise InputError(f"{where}: bad JSON (nested too deeply)") from None
        text = None
        if isinstance(record, dict):
            found = next((k for k in VECTOR_KEYS if k in record), None)
            if found is None:
                raise InputError(f'{where}: no "z", "mu" or "vector" key in the JSON object')
            text = record.get("text")
            if text is not None and not isinstance(text, str):
                raise InputError(f'{where}: "text" must be a string')
            values = record[found]
        elif isinstance(record, list):
            values = record
        else:
            raise InputError(f"{where}: expected a JSON object or list, got {clip(line.strip())}")
        vectors.append(_json_vector(values, name, lineno))
        texts.append(text)

    linenos = [lineno for lineno, _ in lines]
    _check_lengths(vectors, linenos, name, dim)
    with_text = [text is not None for text in texts]
    if any(with_text) and not all(with_text):
        odd = linenos[with_text.index(not with_text[0])]
        raise InputError(f'{_show(name)} line {odd}: "text" is on some lines but not others; use it on all or none')
    array = _to_float32(vectors, name, lambda i: f"line {linenos[i]}")
    return array, (texts if all(with_text) else None)  # type: ignore[return-value]


def _leading_fields(rows: list[list[str]], dim: int | None) -> int:
    """How many fields come before the vector: the tsv text-column rule (see the vectors module docstring),
    and with `dim` known, any further leading columns (`encode --keep`: kept columns, then the text)."""
    width = len(rows[0])
    for count in (dim, 2 * dim) if dim is not None else ():
        lead = width - count
        if lead >= 2 and all(not is_number(fields[lead - 1]) for fields in rows):
            return lead  # kept columns, the text (never number-like: escaped on writing), then the vector (and logvar)
    if any(not is_number(fields[0]) for fields in rows):
        return 1
    if dim is None:
        return 0
    return int(width in (dim + 1, 2 * dim + 1) and width not in (dim, 2 * dim))


def _read_tsv(
    lines: list[tuple[int, str]], name: str, dim: int | None
) -> tuple[np.ndarray, list[str] | None]:
    rows = [line.rstrip("\r").split("\t") for _, line in lines]
    linenos = [lineno for lineno, _ in lines]
    width = len(rows[0])
    for fields, lineno in zip(rows, linenos):
        if len(fields) != width:
            raise InputError(
                f"{_show(name)} line {lineno}: row has {len(fields)} tab-separated fields "
                f"but line {linenos[0]} has {width}"
            )
    skip = _leading_fields(rows, dim)
    count = width - skip
    if count == 0:
        raise InputError(
            f"{_show(name)} line {linenos[0]}: no tab-separated numbers; "
            "expected one vector per line (jsonl, tsv, npy or safetensors)"
        )
    if dim is not None and count == 2 * dim:
        count = dim  # the second half is logvar
    _check_dim(count, dim, name, f"line {linenos[0]}")

    vectors: list[list[float]] = []
    for fields, lineno in zip(rows, linenos):
        values = fields[skip : skip + count]
        try:
            vectors.append([float(value) for value in values])
        except ValueError:
            index, value = next((i, v) for i, v in enumerate(values) if not is_number(v))
            raise InputError(
                f"{_show(name)} line {lineno}: field {index + skip + 1} is {clip(value)}, not a number"
            ) from None
    array = _to_float32(vectors, name, lambda i: f"line {linenos[i]}")
    texts = [unescape_tsv(fields[skip - 1]) for fields in rows] if skip else None
    return array, texts


def _binary_matrix(array: np.ndarray, name: str, dim: int | None) -> np.ndarray:
    """Shared checks for npy / safetensors arrays."""
    if array.dtype.kind not in "fiu":
        raise InputError(f"{_show(name)}: array has dtype {array.dtype}; expected float vectors")
    if array.ndim == 1:  # a single vector
        array = array[None, :]
    if array.ndim != 2:
        raise InputError(
            f"{_show(name)}: array has shape {tuple(array.shape)}; expected (n, d) vectors or one (d,) vector"
        )
    if array.shape[0] == 0:
        raise InputError(f"no vectors in {_show(name)}")
    if array.shape[1] == 0:
        raise InputError(f"{_show(name)}: vectors have 0 values")
    if dim is not None and array.shape[1] != dim:
        raise InputError(f"{_show(name)}: vectors have {array.shape[1]} values, the model's latent has {dim}")
    return _to_float32(array, name, lambda i: f"row {i + 1}")


def _check_npy_size(data: bytes, name: str) -> None:
    """Compare the header's shape with the bytes that follow before anything is allocated: a
    257-byte file may claim a (1e11, 32) array."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(stream)
    except Exception as err:  # numpy parses the header as a Python literal: ValueError, TokenError, MemoryError...
        raise InputError(f"{_show(name)} is not a valid .npy file ({_one_line(err)})") from None
    if dtype.hasobject:
        return  # refused below, with its own message
    count = 1
    for size in shape:
        count *= int(size)
    expected, found = count * dtype.itemsize, len(data) - stream.tell()
    if expected != found:
        raise InputError(
            f"{_show(name)} is not a valid .npy file (its header says shape {tuple(shape)}, "
            f"{expected} bytes of data, but {found} follow)"
        )


def _read_npy(data: bytes, name: str, dim: int | None) -> tuple[np.ndarray, list[str] | None]:
    _check_npy_size(data, name)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err):  # object arrays need unpickling, which we never do
            raise InputError(
                f"{_show(name)} holds Python objects (dtype object); save a numeric float array instead"
            ) from None
        raise InputError(f"{_show(name)} is not a valid .npy file ({_one_line(err)})") from None
    except (OSError, EOFError) as err:
        raise InputError(f"{_show(name)} is not a valid .npy file ({_one_line(err)})") from None
    if not isinstance(array, np.ndarray):  # np.load returns an NpzFile for .npz archives
        raise InputError(f"{_show(name)} is an .npz archive, not a .npy file")
    return _binary_matrix(array, name, dim), None


def _safetensors_texts(header: dict[str, Any], name: str, count: int) -> list[str] | None:
    raw = (header.get("__metadata__") or {}).get("texts")
    if raw is None:
        return None
    try:
        texts = json.loads(raw)
    except ValueError:
        texts = None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise InputError(f'{_show(name)}: metadata "texts" is not a JSON list of strings')
    if len(texts) != count:
        raise InputError(f'{_show(name)}: metadata has {len(texts)} texts for {count} vectors')
    return texts


def _safetensors_header(data: bytes, name: str) -> dict[str, Any]:
    size = int.from_bytes(data[:8], "little")
    try:
        if len(data) < 8 or size > len(data) - 8:
            raise ValueError("the header is longer than the file")
        header = json.loads(data[8 : 8 + size])
        if not isinstance(header, dict) or not isinstance(header.get("__metadata__") or {}, dict):
            raise ValueError("the header is not a JSON object")
    except (ValueError, RecursionError) as err:
        raise InputError(f"{_show(name)} is not a valid .safetensors file ({_one_line(err)})") from None
    return header


def _without_bf16(data: bytes, header: dict[str, Any]) -> tuple[bytes, set[str]]:
    """numpy has no bfloat16: relabel BF16 tensors as F16 (same size) so safetensors still checks
    the whole file; returns the new bytes and the relabelled names (widened after loading)."""
    names = {k for k, v in header.items() if k != "__metadata__" and isinstance(v, dict) and v.get("dtype") == "BF16"}
    if not names:
        return data, names
    relabelled = {k: ({**v, "dtype": "F16"} if k in names else v) for k, v in header.items()}
    size = int.from_bytes(data[:8], "little")
    text = json.dumps(relabelled, separators=(",", ":")).encode()
    if len(text) > size:
        raise ValueError("cannot relabel the BF16 header")
    return data[:8] + text.ljust(size) + data[8 + size :], names  # the format allows space padding


def _widen_bf16(array: np.ndarray) -> np.ndarray:
    """bfloat16 bits (read as float16) -> the same values as float32, exactly."""
    return (np.ascontiguousarray(array).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _read_safetensors(data: bytes, name: str, dim: int | None) -> tuple[np.ndarray, list[str] | None]:
    header = _safetensors_header(data, name)
    try:
        relabelled, bf16 = _without_bf16(data, header)
        tensors = safetensors.numpy.load(relabelled)
    except (SafetensorError, ValueError, TypeError, KeyError) as err:  # TypeError/KeyError: dtypes numpy lacks
        raise InputError(f"{_show(name)} is not a valid .safetensors file ({_one_line(err)})") from None
    tensors = {k: _widen_bf16(v) if k in bf16 else v for k, v in tensors.items()}
    found = next((k for k in VECTOR_KEYS if k in tensors), None)
    others = [k for k in tensors if k != "logvar"]
    if found is None and len(others) == 1:  # written with a custom key
        found = others[0]
    if found is None:
        listed = ", ".join(sorted(tensors)) or "none"
        raise InputError(f'{_show(name)}: no "z", "mu" or "vector" tensor (found: {listed})')
    array = _binary_matrix(tensors[found], name, dim)
    return array, _safetensors_texts(header, name, len(array))


def _sniff_binary(data: bytes) -> Format | None:
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    # safetensors: 8-byte little-endian header length, then a JSON object. Text never
    # matches: its first 8 bytes read as a huge number.
    size = int.from_bytes(data[:8], "little")
    if len(data) > 9 and 2 <= size <= len(data) - 8 and data[8:9] == b"{":
        return "safetensors"
    return None


def _looks_like_jsonl(first_line: str) -> bool:
    stripped = first_line.lstrip()
    if not stripped.startswith(("{", "[")):
        return False
    if "\t" not in stripped:  # JSON we write never has a raw tab; a tsv row with text always does
        return True
    try:
        json.loads(stripped)
    except ValueError:
        return False  # a tsv row whose text starts with "[" or "{"
    return True


def read_vectors(
    data: bytes, fmt: Format | None = None, name: str = STDIN_NAME, dim: int | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """Inverse of write_vectors: ((n, d) float32 array, texts or None).

    fmt None detects: npy magic, safetensors header, else text whose first non-blank line
    starts with "{" or "[" is jsonl, otherwise tsv (rules in the module docstring).
    `dim`, when given, is the model's latent size: other widths are an error, and it
    resolves the tsv text-column / logvar ambiguity. Every problem raises InputError
    naming `name` and, for text formats, the line number.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if dim is not None and dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    data = bytes(data)
    if not data:
        raise InputError(f"no vectors in {_show(name)}")
    fmt = fmt or _sniff_binary(data)
    if fmt == "npy":
        if not data.startswith(b"\x93NUMPY"):
            raise InputError(f"{_show(name)} is not a .npy file (no NumPy header)")
        return _read_npy(data, name, dim)
    if fmt == "safetensors":
        return _read_safetensors(data, name, dim)

    lines = [(n, line) for n, line in _split_lines(decode_text(data, name)) if line.strip()]
    if not lines:
        raise InputError(f"no vectors in {_show(name)}")
    if fmt is None:
        fmt = "jsonl" if _looks_like_jsonl(lines[0][1]) else "tsv"
    if fmt == "jsonl":
        return _read_jsonl(lines, name, dim)
    return _read_tsv(lines, name, dim)


def _is_binary(head: bytes) -> bool:
    """npy, or a safetensors header (an 8-byte little-endian size, then "{"): text never starts so, since a
    size below 2**32 means NUL bytes, which text never has."""
    size = int.from_bytes(head[:8], "little")
    return head.startswith(b"\x93NUMPY") or (len(head) > 8 and head[8:9] == b"{" and 2 <= size < 2**32)


def stream_vectors(chunks: Iterator[bytes], name: str = STDIN_NAME, fmt: Format | None = None, dim: int | None = None,
                   max_rows: int = 64, ready: Callable[[], bool] = lambda: True) -> Iterator[np.ndarray]:
    """read_vectors over bytes that arrive in `chunks`, as (n <= max_rows, d) float32 arrays: jsonl and tsv
    rows are yielded as soon as their lines are in (a shorter piece when `ready()` says nothing more can be
    read at once); npy and safetensors describe the whole array first, so they are read whole. The same
    checks and messages as read_vectors, each raised when the reader reaches the line."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    chunks = iter(chunks)
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= 9:
            break
    if fmt in ("npy", "safetensors") or (fmt is None and _is_binary(head)):
        array, _ = read_vectors(head + b"".join(chunks), fmt, name, dim)
        for start in range(0, len(array), max_rows):
            yield array[start : start + max_rows]
        return
    first: tuple[int, int, bool] | None = None  # (line, tsv fields or vector size, with text) of the first vector
    for piece in numbered_pieces(itertools.chain([head], chunks), name, ready, max_rows):
        lines = [(n, line) for n, line in piece if line.strip()]
        if not lines:
            continue
        if fmt is None:
            fmt = "jsonl" if _looks_like_jsonl(lines[0][1]) else "tsv"
        if fmt == "tsv":
            width = len(lines[0][1].rstrip("\r").split("\t"))
            if first is not None and width != first[1]:
                raise InputError(f"{_show(name)} line {lines[0][0]}: row has {width} tab-separated fields but line {first[0]} has {first[1]}")
        array, texts = (_read_jsonl if fmt == "jsonl" else _read_tsv)(lines, name, dim)
        if fmt == "jsonl":
            width = array.shape[1]
            if first is not None and width != first[1]:
                raise InputError(f"{_show(name)} line {lines[0][0]}: vector has {width} values but line {first[0]} has {first[1]}")
            if first is not None and (texts is not None) != first[2]:
                raise InputError(f'{_show(name)} line {lines[0][0]}: "text" is on some lines but not others; use it on all or none')
        first = first or (lines[0][0], width, texts is not None)
        yield array
    if first is None:
        raise InputError(f"no vectors in {_show(name)}")
