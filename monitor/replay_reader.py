"""``bakemon replay`` on two cores: the log is read and decoded in a child process.

Reading a log (gunzip, splitting lines, parsing, decoding and screening by the event-time
clock) costs about as much as folding it into the verdict engines, and both ran on one core
(issue 13, point 6). :func:`read_decoded` forks a child that does the reading and decoding and
sends each increment, decoded, through a pipe (a batch's numpy columns pickle as their bytes);
the parent tags, summarises and runs the detectors meanwhile. The pipe holds about one batch,
so the child runs at most an increment or two ahead and memory stays bounded. The results are
those of :func:`monitor.replay.decoded_batches` in one process (the same functions on the same
batches in the same order); ``tests/monitor/test_replay_reader.py`` checks that.

Where ``fork`` is not available, or for standard input (a child process gets no stdin), the
log is read in-process as before.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import IO

from monitor.errors import InputError, MonitorError
from monitor.records.clock import DEFAULT_MAX_CLOCK_SKEW_S
from monitor.records.fieldmap import FieldMap
from monitor.replay import DecodedBatch, decoded_batches, iter_line_batches

__all__ = ["read_decoded"]

JOIN_TIMEOUT_S = 5.0
PIPE_BYTES = 1 << 20  # a few decoded increments: the reader runs that far ahead at most


def read_decoded(
    stream: IO[bytes],
    increment: int,
    field_map: FieldMap,
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
    *,
    child: bool = True,
) -> Iterator[DecodedBatch]:
    """The log's increments of ``increment`` lines, decoded and screened, from a child process
    (``child``, where fork is available) or in this one. A reading error in the child is
    raised here as the :class:`~monitor.errors.InputError` it was."""
    import sys

    if (
        not child
        or stream is sys.stdin.buffer
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        yield from decoded_batches(
            iter_line_batches(stream, increment), field_map, max_clock_skew_s
        )
        return
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    _widen(send)
    proc = ctx.Process(
        target=_child,
        args=(send, stream, increment, field_map, max_clock_skew_s),
        name="bakemon-replay-reader",
        daemon=True,  # never outlives the replay
    )
    with warnings.catch_warnings():  # Python 3.12+: numpy's BLAS threads make fork "unsafe";
        warnings.simplefilter("ignore", DeprecationWarning)  # the child uses no BLAS
        proc.start()
    send.close()
    try:
        yield from _receive(recv, proc)
    finally:
        recv.close()
        if proc.is_alive():
            proc.terminate()
        proc.join(JOIN_TIMEOUT_S)


def _widen(conn: Connection) -> None:
    """A pipe of ``PIPE_BYTES`` (Linux; the default 64 KB holds less than one decoded batch,
    which kept the two processes in lockstep); elsewhere the default."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (ImportError, OSError):
        pass


def _receive(recv: Connection, proc: multiprocessing.process.BaseProcess) -> Iterator[DecodedBatch]:
    while True:
        try:
            kind, payload = recv.recv()
        except EOFError:
            proc.join(JOIN_TIMEOUT_S)
            msg = f"the log reader process stopped unexpectedly (exit code {proc.exitcode})"
            raise InputError(msg, value=None) from None
        if kind == "batch":
            yield payload
        elif kind == "error":
            raise InputError(payload, value=None)
        else:
            return


def _child(
    send: Connection,
    stream: IO[bytes],
    increment: int,
    field_map: FieldMap,
    max_clock_skew_s: float,
) -> None:
    """Read, decode and send every increment, then "done" (or the error that stopped it)."""
    try:
        for batch in decoded_batches(
            iter_line_batches(stream, increment), field_map, max_clock_skew_s
        ):
            send.send(("batch", batch))
        send.send(("done", None))
    except MonitorError as exc:
        send.send(("error", str(exc)))
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        pass  # the replay stopped reading
    finally:
        send.close()
