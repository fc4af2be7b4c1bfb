"""Nodes started by a launcher die with it (testnet/README.md).

Two mechanisms, because either alone has a gap:

- On Linux the child asks the kernel for SIGTERM when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), so the node shuts down through its normal SIGTERM path.
- Everywhere, the launcher holds the write end of a pipe whose read end every node watches
  (``p2pnode run --exit-with-fd FD``). The launcher never writes: end of file means the
  launcher is gone, however it died, and the node stops.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
# Once the launcher is gone, nobody will SIGKILL a node whose shutdown hangs: the node
# does it itself after this long.
HARD_EXIT_AFTER_S = 6.0


# Loaded in the parent: between fork and exec the child must not load libraries or run
# subprocesses (``ctypes.util.find_library`` does), it may only call into them.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def set_parent_death_signal(parent_pid: int) -> None:
    """In the child, between fork and exec: SIGTERM us when our parent dies (Linux only).

    The kernel sends it when the *thread* that forked us exits, so start nodes from the
    main thread. If the parent died before the request took effect, we would never get
    the signal, so a changed parent pid means the child exits at once.
    """
    if _LIBC is None:
        return
    _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def arm_hard_exit(after_s: float = HARD_EXIT_AFTER_S) -> None:
    """A last resort once the launcher is gone: exit even if the graceful shutdown hangs."""
    t = threading.Timer(after_s, os._exit, args=(1,))
    t.daemon = True
    t.start()


async def wait_for_eof(fd: int) -> None:
    """Return once the pipe's write end is closed everywhere (the launcher is gone)."""
    import trio

    os.set_blocking(fd, False)
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            if os.read(fd, 512) == b"":
                return
        except BlockingIOError:
            continue
