"""Input/output for vaecli: sentences in, latent vectors in and out, atomic writes.

Everything that touches user-supplied bytes goes through this module so the CLI
and the Python API share one set of rules and one style of error:

* Bad user input raises :class:`InputError`; ``str(e)`` is a single line that
  names the source (a path, ``<stdin>``, ``argument 2``) and says what to do.
* Bad values from our own code (e.g. NaN vectors from the model) raise a plain
  ``ValueError``: that is a bug or a diverged model, not the user's fault.

Text input
    UTF-8 only; a leading BOM is dropped. Lines are split on ``\\n`` only
    (``\\r\\n`` works because every line is stripped). Other characters that
    ``str.splitlines`` treats as line breaks (U+2028, U+2029, ``\\x0b``,
    ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``) stay inside the line: they are
    legitimate in sentences and must not change the number of outputs.

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
import os
import re
import secrets
import shlex
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Literal, get_args

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

__all__ = [
    "FORMATS",
    "Format",
    "InputError",
    "Lines",
    "atomic_open",
    "atomic_write_bytes",
    "check_text_file",
    "decode_text",
    "read_lines",
    "read_vectors",
    "write_vectors",
]

Format = Literal["jsonl", "tsv", "npy", "safetensors"]
FORMATS: tuple[Format, ...] = get_args(Format)

STDIN_NAME = "<stdin>"
_CHUNK = 1 << 20  # bytes per read when validating a file; module-level so tests can shrink it
_BATCH = 1024  # rows encoded per write call: bounded memory, few syscalls
_VECTOR_KEYS = ("z", "mu", "vector")


class InputError(ValueError):
    """Bad user input; str(e) is ONE clear line for stderr saying what is wrong and what to do."""


@dataclass
class Lines:
    """Sentences read for a command."""

    texts: list[str]  # non-blank lines, stripped of the line end and surrounding whitespace
    blank: int = 0  # blank / whitespace-only lines skipped


# --------------------------------------------------------------------------- names and messages


def _show(name: str | os.PathLike[str]) -> str:
    """Name for a message; repr() when printing it raw would break the one-line rule."""
    text = os.fsdecode(name)
    return text if text and text.isprintable() else repr(text)


def _one_line(err: BaseException) -> str:
    """A library's exception text squeezed onto one short line."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _clip(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


# First bytes of files people pipe in by mistake, with the fix. Checked before the
# NUL / UTF-8 scan so the message names the real problem instead of "byte 0x8b".
_MAGIC: tuple[tuple[re.Pattern[bytes], str], ...] = tuple(
    (re.compile(pattern), what)
    for pattern, what in (
        (rb"\x1f\x8b", "gzip-compressed; decompress it first (gunzip / zcat)"),
        (rb"PK(\x03\x04|\x05\x06|\x07\x08)", "a zip archive; extract the text file first (unzip)"),
        (rb"BZh[1-9]1AY&SY", "bzip2-compressed; decompress it first (bunzip2 / bzcat)"),
        (rb"\xfd7zXZ\x00", "xz-compressed; decompress it first (unxz / xzcat)"),
        (rb"\x28\xb5\x2f\xfd", "zstd-compressed; decompress it first (unzstd / zstdcat)"),
        (rb"7z\xbc\xaf\x27\x1c", "a 7-Zip archive; extract the text file first (7z x)"),
        (rb"\x93NUMPY", "a NumPy .npy file, not text"),
        (rb"\xff\xfe|\xfe\xff", "UTF-16 text; convert it first: iconv -f utf-16 -t utf-8"),
    )
)


def _check_magic(head: bytes, name: str) -> None:
    for pattern, what in _MAGIC:
        if pattern.match(head):
            raise InputError(f"{_show(name)} is {what}")


def _binary_error(name: str, offset: int, line: int) -> InputError:
    return InputError(
        f"{_show(name)} looks like a binary file (NUL byte at offset {offset}, line {line}), "
        "not UTF-8 text"
    )


def _utf8_error(name: str, offset: int, line: int, byte: int) -> InputError:
    if name.startswith("<"):  # stdin and friends: no path to put in the command
        fix = "if it is Latin-1, pipe it through iconv -f latin1 -t utf-8"
    else:
        fix = f"if it is Latin-1, convert it: iconv -f latin1 -t utf-8 {shlex.quote(name)} > fixed.txt"
    return InputError(
        f"{_show(name)} is not valid UTF-8 (byte 0x{byte:02x} at offset {offset}, line {line}); {fix}"
    )


def _open_error(name: str, err: OSError) -> InputError:
    if isinstance(err, (FileNotFoundError, NotADirectoryError)):
        return InputError(f"{_show(name)}: no such file")
    if isinstance(err, IsADirectoryError):
        return InputError(f"{_show(name)} is a directory; give a text file with one sentence per line")
    if isinstance(err, PermissionError):
        return InputError(f"{_show(name)}: permission denied; check the file's permissions")
    return InputError(f"cannot read {_show(name)}: {err.strerror or _one_line(err)}")


# --------------------------------------------------------------------------- text validation


def _check_buffer(buf: bytes, name: str, offset: int, newlines: int, final: bool) -> int:
    """Raise for a NUL or invalid UTF-8 in buf; return how many trailing bytes are an
    incomplete character to carry into the next chunk (0 when final)."""
    keep, bad = 0, -1
    try:
        buf.decode("utf-8")
    except UnicodeDecodeError as err:
        # A character cut by the chunk boundary is only an error at the end of the file.
        if not final and err.end == len(buf) and err.reason == "unexpected end of data":
            keep = len(buf) - err.start
        else:
            bad = err.start
    end = bad if bad >= 0 else len(buf) - keep
    nul = buf.find(b"\0", 0, end)
    if nul >= 0:
        raise _binary_error(name, offset + nul, newlines + buf.count(b"\n", 0, nul) + 1)
    if bad >= 0:
        raise _utf8_error(name, offset + bad, newlines + buf.count(b"\n", 0, bad) + 1, buf[bad])
    return keep


def _scan_text(chunks: Iterable[bytes], name: str) -> None:
    """Validate a stream of chunks as UTF-8 text without holding it all in memory."""
    pending = b""  # incomplete character carried over from the previous chunk
    offset = 0  # absolute offset of pending[0]
    newlines = 0  # newlines before offset, for line numbers in messages
    first = True
    for chunk in chunks:
        if first:
            _check_magic(chunk, name)
            first = False
        buf = pending + chunk
        done = len(buf) - _check_buffer(buf, name, offset, newlines, final=False)
        newlines += buf.count(b"\n", 0, done)
        offset += done
        pending = buf[done:]
    if pending:
        _check_buffer(pending, name, offset, newlines, final=True)


def _stat_input(path: str | os.PathLike[str]) -> os.stat_result:
    name = os.fsdecode(path)
    try:
        info = os.stat(path)
    except OSError as err:
        raise _open_error(name, err) from None
    if stat.S_ISDIR(info.st_mode):
        raise _open_error(name, IsADirectoryError())
    return info


def check_text_file(path: str | os.PathLike[str]) -> None:
    """Raise InputError (one line naming the path) when path is missing, a directory,
    unreadable, compressed or binary, or not valid UTF-8 (with the offset and line of
    the first bad byte). Streams the file in chunks, so large files are fine; a UTF-8
    BOM is fine.

    Only regular files get the content check: a pipe such as ``<(cmd)`` can be read
    once, and read_lines applies the same checks as it reads.
    """
    name = os.fsdecode(path)
    info = _stat_input(path)
    try:
        if not stat.S_ISREG(info.st_mode):
            if not os.access(path, os.R_OK):
                raise PermissionError
            return
        with open(path, "rb") as handle:
            _scan_text(iter(lambda: handle.read(_CHUNK), b""), name)
    except OSError as err:
        raise _open_error(name, err) from None


def decode_text(data: bytes, name: str) -> str:
    """bytes -> str with the same rules as check_text_file (binary or invalid UTF-8 ->
    InputError naming `name`); strips a leading BOM. Used for stdin."""
    _check_magic(data[:16], name)
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        # Report whichever comes first; a NUL before the bad byte falls through to the raise below.
        if nul < 0 or nul > err.start:
            raise _utf8_error(name, err.start, data.count(b"\n", 0, err.start) + 1, data[err.start]) from None
    if nul >= 0:
        raise _binary_error(name, nul, data.count(b"\n", 0, nul) + 1)
    return text.removeprefix("\ufeff")


# --------------------------------------------------------------------------- sentences


def _split_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) on \\n only; never str.splitlines (see module doc)."""
    pieces = text.split("\n")
    if pieces[-1] == "":  # a final newline ends the last line rather than starting a new one
        pieces.pop()
    return enumerate(pieces, start=1)


def _to_lines(candidates: Iterable[str]) -> Lines:
    lines = Lines(texts=[])
    for candidate in candidates:
        stripped = candidate.strip()
        if stripped:
            lines.texts.append(stripped)
        else:
            lines.blank += 1
    return lines


def _check_args(args: Sequence[str]) -> None:
    for number, arg in enumerate(args, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            # Undecodable argv bytes arrive as lone surrogates (PEP 383); they would crash later.
            raise InputError(
                f"argument {number} is not valid UTF-8; check the terminal's encoding (e.g. LANG=C.UTF-8)"
            ) from None


def _read_file(path: str | os.PathLike[str]) -> str:
    name = os.fsdecode(path)
    _stat_input(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise _open_error(name, err) from None
    return decode_text(data, name)


def _read_stream(stream: IO[Any]) -> str:
    # sys.stdin is a text stream; its .buffer has the raw bytes we want to validate ourselves.
    data = getattr(stream, "buffer", stream).read()
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    return decode_text(bytes(data), STDIN_NAME)


def read_lines(
    args: Sequence[str] = (), path: str | None = None, stdin: BinaryIO | None = None
) -> Lines:
    """Sentences for a command, from the first source present:

    1. ``args`` (each argument is one sentence; blank ones are skipped and counted),
    2. the file ``path`` (unless it is ``'-'``; check_text_file rules),
    3. ``stdin`` (a binary stream; ``path='-'`` also means stdin).

    Lines split on ``\\n`` only (CRLF and a missing final newline are fine) and are
    stripped; blank lines are counted. Raises InputError when no source is given.
    """
    if isinstance(args, str):  # read_lines("one sentence") would otherwise iterate characters
        raise TypeError("args must be a sequence of strings, not a single string")
    if args:
        _check_args(args)
        return _to_lines(args)
    if path is not None and path != "-":
        return _to_lines(line for _, line in _split_lines(_read_file(path)))
    if stdin is None:
        raise InputError("no input: give sentences as arguments, a file path, or pipe text on stdin")
    return _to_lines(line for _, line in _split_lines(_read_stream(stdin)))


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


def _is_number(field: str) -> bool:
    return _NUMBER.fullmatch(field) is not None


def _escape_tsv(text: str) -> str:
    escaped = _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], text)
    # The empty escape keeps a number-like text from being read back as a vector value.
    return "\\&" + escaped if _is_number(escaped) else escaped


def _unescape_tsv(field: str) -> str:
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
    z: np.ndarray, texts: list[str] | None, logvar: np.ndarray | None, key: str
) -> Iterator[str]:
    # tolist() gives Python floats holding the exact float32 values; json writes them
    # with float.__repr__, i.e. the round-trip-exact spelling (see module doc).
    logvars = logvar.tolist() if logvar is not None else None
    for i, row in enumerate(z.tolist()):
        record: dict[str, Any] = {}
        if texts is not None:
            record["text"] = texts[i]
        record[key] = row
        if logvars is not None:
            record["logvar"] = logvars[i]
        yield json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"


def _tsv_lines(z: np.ndarray, texts: list[str] | None, logvar: np.ndarray | None) -> Iterator[str]:
    logvars = logvar.tolist() if logvar is not None else None
    for i, row in enumerate(z.tolist()):
        fields = [_escape_tsv(texts[i])] if texts is not None else []
        fields.extend(map(repr, row))
        if logvars is not None:
            fields.extend(map(repr, logvars[i]))
        yield "\t".join(fields) + "\n"


def write_vectors(
    out: BinaryIO,
    vectors: np.ndarray,
    texts: Sequence[str] | None = None,
    fmt: Format = "jsonl",
    logvar: np.ndarray | None = None,
    key: str = "z",
) -> None:
    """Write (n, d) vectors (stored as float32) to the binary stream `out` in `fmt`;
    layouts in the module docstring. npy stores neither texts nor logvar.

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

    if fmt == "jsonl":
        _write_lines(out, _jsonl_lines(z, text_list, lv, key))
    elif fmt == "tsv":
        _write_lines(out, _tsv_lines(z, text_list, lv))
    elif fmt == "npy":
        np.save(out, z.astype("<f4", copy=False), allow_pickle=False)
    else:
        tensors = {key: z} if lv is None else {key: z, "logvar": lv}
        metadata = None if text_list is None else {"texts": json.dumps(text_list, ensure_ascii=False)}
        out.write(safetensors.numpy.save(tensors, metadata=metadata))


# --------------------------------------------------------------------------- reading vectors


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
            raise InputError(f"{where}: value {index} is {_clip(json.dumps(value))}, not a number")
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
        text = None
        if isinstance(record, dict):
            found = next((k for k in _VECTOR_KEYS if k in record), None)
            if found is None:
                raise InputError(f'{where}: no "z", "mu" or "vector" key in the JSON object')
            text = record.get("text")
            if text is not None and not isinstance(text, str):
                raise InputError(f'{where}: "text" must be a string')
            values = record[found]
        elif isinstance(record, list):
            values = record
        else:
            raise InputError(f"{where}: expected a JSON object or list, got {_clip(line.strip())}")
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


def _has_text_column(rows: list[list[str]], dim: int | None) -> bool:
    """The tsv text-column rule; see the module docstring."""
    if any(not _is_number(fields[0]) for fields in rows):
        return True
    if dim is None:
        return False
    width = len(rows[0])
    return width in (dim + 1, 2 * dim + 1) and width not in (dim, 2 * dim)


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
    skip = int(_has_text_column(rows, dim))
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
            index, value = next((i, v) for i, v in enumerate(values) if not _is_number(v))
            raise InputError(
                f"{_show(name)} line {lineno}: field {index + skip + 1} is {_clip(value)}, not a number"
            ) from None
    array = _to_float32(vectors, name, lambda i: f"line {linenos[i]}")
    texts = [_unescape_tsv(fields[0]) for fields in rows] if skip else None
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


def _read_npy(data: bytes, name: str, dim: int | None) -> tuple[np.ndarray, list[str] | None]:
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


def _safetensors_texts(data: bytes, name: str, count: int) -> list[str] | None:
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
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


def _read_safetensors(data: bytes, name: str, dim: int | None) -> tuple[np.ndarray, list[str] | None]:
    try:
        tensors = safetensors.numpy.load(data)
    except (SafetensorError, ValueError, TypeError) as err:  # TypeError: dtypes numpy lacks (bf16)
        raise InputError(f"{_show(name)} is not a valid .safetensors file ({_one_line(err)})") from None
    found = next((k for k in _VECTOR_KEYS if k in tensors), None)
    others = [k for k in tensors if k != "logvar"]
    if found is None and len(others) == 1:  # written with a custom key
        found = others[0]
    if found is None:
        listed = ", ".join(sorted(tensors)) or "none"
        raise InputError(f'{_show(name)}: no "z", "mu" or "vector" tensor (found: {listed})')
    array = _binary_matrix(tensors[found], name, dim)
    return array, _safetensors_texts(data, name, len(array))


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


# --------------------------------------------------------------------------- atomic writes


def _create_temp(target: str) -> tuple[str, int]:
    """Create an exclusive temporary file next to target; returns (path, fd)."""
    folder, base = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temp = os.path.join(folder, f".{base[:200]}.{secrets.token_hex(4)}.tmp")
        try:
            # 0o666 lets the umask decide, like a plain open(); mkstemp would force 0o600.
            fd = os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
        with suppress(OSError):  # replacing a file keeps its permissions
            os.fchmod(fd, stat.S_IMODE(os.stat(target).st_mode))
        return temp, fd
    raise FileExistsError(f"could not create a temporary file next to {target}")


def _fdopen(fd: int, mode: Literal["wb", "w"]) -> IO[Any]:
    if mode == "wb":
        return os.fdopen(fd, "wb")
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n")


def _fsync_dir(folder: str) -> None:
    # Makes the rename itself durable; not every platform/filesystem allows it.
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace path with data atomically (see atomic_open)."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: Literal["wb", "w"] = "wb") -> Iterator[IO[Any]]:
    """Write to a temporary file in the same directory, flush + fsync, then os.replace
    onto path; on an exception the temporary file is removed and path is left untouched.
    Mode "w" writes UTF-8 with "\\n" line ends. A symlink at path is followed, so its
    target is replaced. Unwritable destinations raise InputError."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    name = os.fsdecode(path)
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        raise InputError(f"{_show(name)} is a directory; give a file path to write to")
    if not os.path.isdir(folder):
        raise InputError(f"cannot write {_show(name)}: directory {_show(folder)} does not exist")
    try:
        temp, fd = _create_temp(target)
    except PermissionError:
        raise InputError(f"cannot write {_show(name)}: permission denied in {_show(folder)}") from None
    except OSError as err:
        raise InputError(f"cannot write {_show(name)}: {err.strerror or _one_line(err)}") from None
    try:
        with _fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:  # KeyboardInterrupt too: never leave a half-written temp behind
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(folder)
