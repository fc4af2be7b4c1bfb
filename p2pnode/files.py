"""Private files in the node home (key file, ``api.json``): mode 0600, written atomically,
never through a symlink."""

from __future__ import annotations

import os
from pathlib import Path

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, so that a reader sees the old file or the
    new one, never a part.

    The temp file is created with ``O_EXCL | O_NOFOLLOW``: a file or symlink planted at the
    temp path is removed (unlinking a symlink does not follow it) rather than written
    through. The rename replaces a symlink at ``path`` itself, not the file it points to.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, _FLAGS, 0o600)
    except FileExistsError:
        tmp.unlink()  # a stale temp file of a crashed writer, or a planted link
        fd = os.open(tmp, _FLAGS, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
