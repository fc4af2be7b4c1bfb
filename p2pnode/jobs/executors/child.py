"""Executions in a child process, and the frames that carry them (spec 04 EXE-9).

The node runs executions in ``python -m p2pnode.jobs.executors.child`` processes, so that
stopping an execution is killing a process (:mod:`p2pnode.services.execution`). A child
answers one request after another; the node reuses it while its executions end with a
response, and kills it whenever one must stop. Both
directions use the same frame: a 4-byte big-endian length, a header in the deterministic
CBOR profile (spec 01 §2), then raw byte strings whose lengths the header gives, so that
no blob is ever copied into a CBOR item.

Request, on the child's stdin::

    {"kind": tstr, "device": tstr, "params": {* any => any}, "limits": {* tstr => uint / tstr},
     "inputs": [* [name: tstr, length: uint]]}   then the inputs' bytes, in that order

``limits`` holds the fields of :class:`Limits`; a float field is written as
``float.hex()`` text, as the profile has no floats. While a request runs the node writes
nothing more and keeps stdin open: its end of file then means the node is gone, and the
child exits at once (``EXIT_ORPHANED``). Between requests, end of file ends the child with
status 0.

Response, on the child's stdout::

    {"status": "ok", "meta": {* tstr => int / tstr}, "output": length}   then the output
    {"status": "error", "reason": tstr, "detail": tstr}                  an ExecError
    {"status": "refused", "detail": tstr}                                an unusable kind or device

Anything else (an exit, no response) is a child that died. The child writes
nothing else to stdout: fd 1 is pointed at stderr before any executor code runs, so a
library that prints cannot corrupt the response.

This module imports only the executor base and the codec; the executor of the job's kind
(numpy for ``matmul``, wasmtime for ``wasm``) is imported when the request names it.
"""

from __future__ import annotations

import dataclasses
import os
import select
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO, Final

from p2pnode.jobs.executors.base import ExecError, ExecResult, Limits
from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason, WireError

MODULE: Final = "p2pnode.jobs.executors.child"
LENGTH_BYTES: Final = 4
# Bound on a frame's header: params are at most MAX_PARAMS x MAX_PARAM_BYTES (spec 04 §8),
# meta and details are short.
MAX_HEADER_BYTES: Final = 64 << 10
# Bound on the text of an error detail, so that a response header always fits.
MAX_DETAIL_CHARS: Final = 1000

# Exit statuses other than 0 (a response was written).
EXIT_BAD_REQUEST: Final = 2
EXIT_ORPHANED: Final = 3


class FrameError(Exception):
    """A frame that is not one this module writes."""


def _frame(header: Mapping[str, Any]) -> bytes:
    head = cbor.encode(dict(header))
    if len(head) > MAX_HEADER_BYTES:
        raise WireError(Reason.TOO_LARGE, f"frame header of {len(head)} bytes")
    return len(head).to_bytes(LENGTH_BYTES, "big") + head


def limits_to_wire(limits: Limits) -> dict[str, int | str]:
    """The ``limits`` map of a request (floats as ``float.hex()`` text)."""
    out: dict[str, int | str] = {}
    for f in dataclasses.fields(limits):
        value = getattr(limits, f.name)
        out[f.name] = value.hex() if isinstance(value, float) else int(value)
    return out


def limits_from_wire(value: Any) -> Limits:
    """The :class:`Limits` of a request's ``limits`` map; :class:`FrameError` or
    ``ValueError`` if it is not one."""
    if not isinstance(value, dict):
        raise FrameError("limits is not a map")
    known = {f.name for f in dataclasses.fields(Limits)}
    if set(value) != known:
        raise FrameError(f"limits names {sorted(map(str, value))}")
    fields: dict[str, Any] = {name: float.fromhex(v) if isinstance(v, str) else v
                              for name, v in value.items()}
    return Limits(**fields)


def encode_request(kind: str, device: str, inputs: Mapping[str, bytes],
                   params: Mapping[str, Any], limits: Limits) -> list[bytes | memoryview]:
    """The request frame as pieces to write in order (the inputs are not copied).

    Raises :class:`ExecError` where the in-process executor would refuse the same values
    (an input that is not bytes; params the codec cannot carry).
    """
    blobs: list[bytes | memoryview] = []
    names: list[list[Any]] = []
    for name, blob in inputs.items():
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise ExecError(Reason.BAD_FIELD, f"input {name!r} is not bytes")
        view = memoryview(blob).cast("B")
        names.append([name, view.nbytes])
        blobs.append(view)
    header = {"kind": kind, "device": device, "params": dict(params),
              "limits": limits_to_wire(limits), "inputs": names}
    try:
        head = _frame(header)
    except WireError as e:
        raise ExecError.from_wire(e, "params") from e
    return [head, *blobs]


def encode_response(result: ExecResult | ExecError | ValueError) -> list[bytes]:
    """The response frame for an execution's outcome, as pieces to write in order."""
    if isinstance(result, ExecResult):
        head = _frame({"status": "ok", "meta": dict(result.meta), "output": len(result.output)})
        return [head, result.output]
    if isinstance(result, ExecError):
        return [_frame({"status": "error", "reason": result.reason.value,
                        "detail": result.detail[:MAX_DETAIL_CHARS]})]
    return [_frame({"status": "refused", "detail": str(result)[:MAX_DETAIL_CHARS]})]


def _split(frame: bytes | bytearray) -> tuple[dict[Any, Any], memoryview]:
    if len(frame) < LENGTH_BYTES:
        raise FrameError(f"a frame of {len(frame)} bytes")
    size = int.from_bytes(frame[:LENGTH_BYTES], "big")
    if size > MAX_HEADER_BYTES or LENGTH_BYTES + size > len(frame):
        raise FrameError(f"a header of {size} bytes")
    try:
        header = cbor.decode(bytes(frame[LENGTH_BYTES:LENGTH_BYTES + size]), max_size=size)
    except WireError as e:
        raise FrameError(f"header: {e}") from e
    if not isinstance(header, dict):
        raise FrameError("header is not a map")
    return header, memoryview(frame)[LENGTH_BYTES + size:]


def decode_response(frame: bytes | bytearray) -> ExecResult | ExecError | ValueError:
    """The outcome a response frame carries; :class:`FrameError` if it is not one."""
    header, rest = _split(frame)
    status = header.get("status")
    if status == "ok":
        meta, size = header.get("meta"), header.get("output")
        if not isinstance(meta, dict) or not isinstance(size, int) or size != len(rest):
            raise FrameError("malformed ok response")
        return ExecResult(output=bytes(rest), meta=meta)
    if rest:
        raise FrameError("bytes after the response header")
    detail, reason = header.get("detail"), header.get("reason", "")
    if not isinstance(detail, str) or not isinstance(reason, str):
        raise FrameError("response without a detail")
    if status == "error":
        try:
            return ExecError(Reason(reason), detail)
        except ValueError as e:  # not a reason, or not one an execution may end with
            raise FrameError(f"reason {reason!r}") from e
    if status == "refused":
        return ValueError(detail)
    raise FrameError(f"status {status!r}")


def response_length(buf: bytes | bytearray) -> int | None:
    """The length of the response that starts ``buf``, once its header has arrived (None
    before); :class:`FrameError` if the start is not a response header."""
    if len(buf) < LENGTH_BYTES:
        return None
    size = int.from_bytes(buf[:LENGTH_BYTES], "big")
    if size > MAX_HEADER_BYTES:
        raise FrameError(f"a header of {size} bytes")
    if len(buf) < LENGTH_BYTES + size:
        return None
    header, _ = _split(bytes(buf[:LENGTH_BYTES + size]))
    output = header.get("output", 0) if header.get("status") == "ok" else 0
    if not isinstance(output, int) or output < 0:
        raise FrameError("malformed ok response")
    return LENGTH_BYTES + size + output


# -- the child side ---------------------------------------------------------------------------


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    chunks: list[bytes] = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            raise FrameError("end of input inside the request")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_request(stream: BinaryIO) -> tuple[str, str, dict[str, bytes], Any, Limits]:
    """Kind, device, inputs, params and limits of the request on ``stream``."""
    size = int.from_bytes(_read_exactly(stream, LENGTH_BYTES), "big")
    if size > MAX_HEADER_BYTES:
        raise FrameError(f"a header of {size} bytes")
    header, _ = _split(size.to_bytes(LENGTH_BYTES, "big") + _read_exactly(stream, size))
    kind, device, names = header.get("kind"), header.get("device"), header.get("inputs")
    if not isinstance(kind, str) or not isinstance(device, str) or not isinstance(names, list):
        raise FrameError("malformed request")
    inputs: dict[str, bytes] = {}
    for entry in names:
        if (not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str)
                or not isinstance(entry[1], int)):
            raise FrameError("malformed input entry")
        inputs[entry[0]] = _read_exactly(stream, entry[1])
    return kind, device, inputs, header.get("params"), limits_from_wire(header.get("limits"))


_RUNNING = threading.Event()


def _exit_when_orphaned(fd: int) -> None:
    # While a request runs the node writes nothing: a hang-up of stdin then means it closed
    # the pipe or died, and nobody wants this execution any more. The next request's bytes
    # (POLLIN without a hang-up) are left for the main thread to read.
    poller = select.poll()
    poller.register(fd, select.POLLHUP | select.POLLERR)
    while True:
        events = poller.poll()
        if _RUNNING.is_set() and any(ev & (select.POLLHUP | select.POLLERR)
                                     for _, ev in events):
            os._exit(EXIT_ORPHANED)
        # Between requests the main thread sees the end of file itself and ends the child.
        time.sleep(0.05)


def run(kind: str, device: str, inputs: Mapping[str, bytes], params: Any,
        limits: Limits) -> ExecResult | ExecError | ValueError:
    """Run one execution, as the node would in process."""
    # Imported here: the package imports a kind's module only when it is asked for.
    from p2pnode.jobs.executors import get_executor

    try:
        executor = get_executor(kind, device=device)
    except ValueError as e:
        return e
    try:
        return executor.run(inputs, params, limits)
    except ExecError as e:
        return e


def _write(out: BinaryIO, pieces: Iterable[bytes | memoryview]) -> None:
    for piece in pieces:
        out.write(piece)
    out.flush()


def _at_boundary(stream: BinaryIO) -> bool:
    """True if the node closed stdin between two requests."""
    return stream.peek(1)[:1] == b"" if hasattr(stream, "peek") else False


def main() -> None:
    """Answer requests from stdin, one after another, until it is closed."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stdin = sys.stdin.buffer
    threading.Thread(target=_exit_when_orphaned, args=(stdin.fileno(),), daemon=True).start()
    status = 0
    while not _at_boundary(stdin):
        try:
            kind, device, inputs, params, limits = read_request(stdin)
        except (FrameError, ValueError) as e:
            print(f"bad request: {e}", file=sys.stderr)
            sys.stderr.flush()
            os._exit(EXIT_BAD_REQUEST)
        _RUNNING.set()
        try:
            _write(out, encode_response(run(kind, device, inputs, params, limits)))
        except BaseException:  # a bug or MemoryError: the node sees a child that died
            traceback.print_exc()
            status = 1
            break
        finally:
            _RUNNING.clear()
    sys.stderr.flush()
    # Nothing to tear down: skip the interpreter's shutdown, and the waiting thread with it.
    os._exit(status)


if __name__ == "__main__":
    main()
