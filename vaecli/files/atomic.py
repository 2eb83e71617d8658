"""Writes that are all or nothing: a file is written aside, fsynced and renamed onto its path.

A process killed mid-write leaves the old file (its recognisable temp, `.NAME.vaecli-PID-XXXXXXXX.tmp`,
is removed by the next write to the same path); a failed write leaves nothing; a full disk is an
OSError(ENOSPC) that names the path; files get the permissions a plain open() would give them.
"""

import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any, Literal

from vaecli.errors import InputError
from vaecli.files.text import _one_line, _show

__all__ = ["atomic_open", "atomic_save", "atomic_write_bytes", "disk_full", "is_disk_full"]


_TEMP_RE = re.compile(r"\.(?P<base>.+)\.vaecli-(?P<pid>\d+)-[0-9a-f]{8}\.tmp")
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_disk_full(err: BaseException) -> bool:
    """Whether err says the disk (or quota) is full; libraries that are not Python (safetensors)
    report it only in their message."""
    if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
        return True
    text = str(err)
    return "No space left on device" in text or "StorageFull" in text or "Disk quota exceeded" in text


def disk_full(name: str | os.PathLike[str]) -> OSError:
    """The OSError for a full disk, naming the path that could not be written (the CLI reports it)."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(name))


def _umask() -> int:
    with suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:  # Linux: read without changing it
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_mode(target: str) -> int:
    """The permissions an ordinary open() would leave: the replaced file's, else 0o666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's live process
        return True
    return True


def _remove_stale_temps(target: str) -> None:
    """Remove temporary files of earlier writes to target whose writer died (SIGKILL, power loss)."""
    folder, base = os.path.split(target)
    with suppress(OSError):
        for entry in os.scandir(folder or "."):
            match = _TEMP_RE.fullmatch(entry.name)
            if match and match["base"] == base[:200] and not _alive(int(match["pid"])):
                with suppress(OSError):
                    os.unlink(entry.path)


def _create_temp(target: str) -> tuple[str, int]:
    """Create an exclusive temporary file next to target; returns (path, fd)."""
    folder, base = os.path.split(target)
    _remove_stale_temps(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temp = os.path.join(folder, f".{base[:200]}.vaecli-{os.getpid()}-{secrets.token_hex(4)}.tmp")
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


def _target(path: str | os.PathLike[str]) -> tuple[str, str, str]:
    """(name for messages, real path, its folder); InputError for destinations that cannot work."""
    name = os.fsdecode(path)
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        raise InputError(f"{_show(name)} is a directory; give a file path to write to")
    if not os.path.isdir(folder):
        raise InputError(f"cannot write {_show(name)}: directory {_show(folder)} does not exist")
    return name, target, folder


def _temp_for(name: str, target: str, folder: str) -> tuple[str, int]:
    try:
        return _create_temp(target)
    except PermissionError:
        raise InputError(f"cannot write {_show(name)}: permission denied in {_show(folder)}") from None
    except OSError as err:
        if is_disk_full(err):
            raise disk_full(name) from None
        raise InputError(f"cannot write {_show(name)}: {err.strerror or _one_line(err)}") from None


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: Literal["wb", "w"] = "wb") -> Iterator[IO[Any]]:
    """Write to a temporary file in the same directory, flush + fsync, then os.replace
    onto path; on an exception the temporary file is removed and path is left untouched.
    Mode "w" writes UTF-8 with "\\n" line ends. A symlink at path is followed, so its
    target is replaced. The file gets the permissions a plain open() would give it.
    Unwritable destinations raise InputError; a full disk raises OSError(ENOSPC) naming path."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    with _replacing(path) as (_, fd, _):
        with _fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def atomic_save(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """atomic_open for libraries that write only to a path they open themselves (safetensors'
    save_file): write(temp_path) fills a temporary file next to path, which then gets the
    permissions a plain open() would give (safetensors leaves 0o600), is fsynced and renamed
    onto path. On failure nothing is left behind; a full disk raises OSError(ENOSPC) naming path."""
    with _replacing(path) as (temp, fd, target):
        os.close(fd)
        write(temp)
        os.chmod(temp, _plain_mode(target))
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def _replacing(path: str | os.PathLike[str]) -> Iterator[tuple[str, int, Any]]:
    """(temp path, its open fd, the resolved target) beside path; renamed onto path when the block succeeds, removed when it
    fails (KeyboardInterrupt too: never a half-written temp left behind); a full disk raises
    OSError(ENOSPC) naming path."""
    name, target, folder = _target(path)
    temp, fd = _temp_for(name, target, folder)
    try:
        yield temp, fd, target
        os.replace(temp, target)
    except BaseException as err:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        if is_disk_full(err):
            raise disk_full(name) from None
        raise
    _fsync_dir(folder)
