"""Sentences in: arguments, text files and stdin, checked and split into lines (streamed where it matters).

Everything that touches user-supplied bytes goes through this module (latent
vector files through :mod:`vaecli.files.vectors`, which builds on it) so the CLI
and the Python API share one set of rules and one style of error:

* Bad user input raises :class:`InputError`; ``str(e)`` is a single line that
  names the source (a path, ``<stdin>``, ``argument 2``) and says what to do.
* Bad values from our own code (e.g. NaN vectors from the model) raise a plain
  ``ValueError``: that is a bug or a diverged model, not the user's fault.

Input that arrives over time (a pipe, `tail -f`) is read in pieces by :mod:`vaecli.files.streaming`, with these
rules and messages.

Text input
    UTF-8 only; a leading BOM is dropped. Lines are split on ``\\n`` only
    (``\\r\\n`` works because every line is stripped). Other characters that
    ``str.splitlines`` treats as line breaks (U+2028, U+2029, ``\\x0b``,
    ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``) stay inside the line: they are
    legitimate in sentences and must not change the number of outputs.
"""

import json
import os
import re
import shlex
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from vaecli.errors import InputError

__all__ = [
    "Lines",
    "check_text_file",
    "decode_text",
    "read_lines",
    "read_records",
]

STDIN_NAME = "<stdin>"
_CHUNK = 1 << 20  # bytes per read when validating a file; module-level so tests can shrink it


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


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file we append to (metrics.jsonl), skipping a line that does not
    parse: the torn tail a process killed during its append leaves behind."""
    records = []
    with open(path, "rb") as handle:
        for line in handle.read().decode("utf-8", errors="replace").split("\n"):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                records.append(record)
    return records
