"""Sentences as they arrive: a file or a pipe read in pieces of lines, each yielded as soon as its lines are there
(`tail -f log | vae encode`, a million-line pipe), checked with the rules and messages of :mod:`vaecli.files.text`."""

import os
import select
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

from vaecli.errors import InputError
from vaecli.files import text as rules  # its chunk size, read at call time (tests shrink it)
from vaecli.files.text import STDIN_NAME, Lines, _check_args, _check_buffer, _check_magic, _open_error, _stat_input, _to_lines


def _ready(stream: Any) -> bool:
    """Whether more bytes can be read from stream at once (a pipe with data waiting, a file)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True  # an in-memory stream: never blocks
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _byte_chunks(stream: Any, size: int) -> Iterator[bytes]:
    """The bytes of a binary stream as they arrive: read1 returns what one read gives (a pipe's
    waiting data), so a line is seen as soon as it is written, not when the buffer fills."""
    read = getattr(stream, "read1", None) or stream.read
    while chunk := read(size):
        yield bytes(chunk)


def numbered_pieces(chunks: Iterator[bytes], name: str, ready: Callable[[], bool], max_lines: int) -> Iterator[list[tuple[int, str]]]:
    """(1-based line number, line) lists of at most max_lines lines each, from byte chunks as they
    arrive, validated like check_text_file. A shorter piece is yielded only when nothing more can be
    read at once (a pipe waiting for its writer) or at the end."""
    pending = bytearray()  # the start of a line whose newline has not arrived yet
    offset = newlines = 0  # bytes and newlines before pending, for the positions in messages
    lines: list[tuple[int, str]] = []
    first = True

    def take(data: bytes) -> None:
        nonlocal offset, newlines, first
        _check_buffer(data, name, offset, newlines, final=True)  # whole lines: whole characters
        text = data.decode("utf-8")
        if first:
            text, first = text.removeprefix("\ufeff"), False
        pieces = text.split("\n")
        if pieces[-1] == "":  # a final newline ends the last line rather than starting a new one
            pieces.pop()
        lines.extend(enumerate(pieces, start=newlines + 1))
        offset, newlines = offset + len(data), newlines + data.count(b"\n")

    for chunk in chunks:
        if first and not pending:
            _check_magic(chunk, name)
        pending += chunk
        end = pending.rfind(b"\n") + 1
        if end:
            take(bytes(pending[:end]))
            del pending[:end]
        while len(lines) >= max_lines:
            yield lines[:max_lines]
            del lines[:max_lines]
        if lines and not ready():
            yield list(lines)
            lines.clear()
    if pending:
        if first:
            _check_magic(bytes(pending), name)
        take(bytes(pending))
    for start in range(0, len(lines), max_lines):
        yield lines[start : start + max_lines]


def stream_chunks(stream: Any) -> tuple[Iterator[bytes], Callable[[], bool]]:
    """A binary stream's bytes as they arrive, and whether more can be read at once."""
    stream = getattr(stream, "buffer", stream)
    return _byte_chunks(stream, rules._CHUNK), lambda: _ready(stream)


def stream_lines(
    args: Sequence[str] = (), path: str | None = None, stdin: BinaryIO | None = None, max_lines: int = 1024
) -> Iterator[Lines]:
    """read_lines in pieces of at most max_lines lines, for commands that must not hold their whole
    input (`tail -f log | vae encode`, a million-line pipe): each Lines is yielded as soon as its
    lines have arrived, with the same checks and messages as read_lines (a bad byte is reported
    when the reader reaches it)."""
    if isinstance(args, str):
        raise TypeError("args must be a sequence of strings, not a single string")
    if args:
        _check_args(args)
        for start in range(0, len(args), max_lines):
            yield _to_lines(args[start : start + max_lines])
        return
    if path is not None and path != "-":
        name = os.fsdecode(path)
        _stat_input(path)
        try:
            handle = open(path, "rb")
        except OSError as err:
            raise _open_error(name, err) from None
        with handle:
            try:
                for piece in numbered_pieces(iter(lambda: handle.read(rules._CHUNK), b""), name, lambda: True, max_lines):
                    yield _to_lines(line for _, line in piece)
            except OSError as err:
                raise _open_error(name, err) from None
        return
    if stdin is None:
        raise InputError("no input: give sentences as arguments, a file path, or pipe text on stdin")
    chunks, ready = stream_chunks(stdin)
    for piece in numbered_pieces(chunks, STDIN_NAME, ready, max_lines):
        yield _to_lines(line for _, line in piece)


