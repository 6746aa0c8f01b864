"""Writing files so that readers see the old file or the whole new one, never half of one.

Maps, reports and dumps are written to a hidden temporary file in the same
folder, flushed to disk, then renamed over the target (``os.replace`` is
atomic on POSIX and Windows). A run killed mid-write leaves at most a hidden
``.NAME.*.tmp`` file, which nothing reads; the target keeps its old content.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from padiff_graph.errors import OutputError


def write_atomically(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file and a rename."""
    with atomic_file(path) as stream:
        stream.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends without an error.

    For writers that want a file object (``numpy.savez``, ``json.dump``). If
    the block raises, the temporary file is removed and ``path`` is untouched.

    Raises:
        OutputError: the folder cannot be created or written, or the disk is full.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise OutputError(f"cannot write {str(target)!r}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"cannot write {str(target)!r}: {error.strerror or error}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_for(target: Path) -> int:
    """Keep a replaced file's permissions; a new file gets those of a plain ``open``."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return default_file_mode()


def default_file_mode() -> int:
    """``0o666 & ~umask``: ``mkstemp`` creates 0o600, which would hide outputs from everyone else."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
