"""Records as JSON lines: one orjson object per request, in the "plain" field map's shape."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterable
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import orjson

from bakesim.errors import SimulationError
from bakesim.generation import Columns, iter_chunks
from bakesim.model import Scenario

__all__ = ["GZIP_LEVEL", "to_json_lines", "write_jsonl", "write_lines"]

CodeArray = npt.NDArray[np.int32]

GZIP_LEVEL: Final = 6


def to_json_lines(columns: Columns) -> list[bytes]:
    """One orjson object per record (no newline), keys in the "plain" preset's order."""

    def names(codes: CodeArray, table: tuple[str, ...]) -> list[str]:
        return np.array(table, dtype=object)[codes].tolist()  # type: ignore[no-any-return]

    dumps = orjson.dumps
    c = columns
    return [
        dumps({"ts": t, "service": s, "version": v, "status": st, "latency_ms": ms,
               "route": r, "zone": z, "host": h})
        for t, s, v, st, ms, r, z, h in zip(
            c.ts.tolist(), names(c.service, c.service_names), names(c.version, c.version_names),
            c.status.tolist(), np.round(c.latency_s * 1e3, 3).tolist(),
            names(c.route, c.route_names), names(c.zone, c.zone_names), names(c.host, c.host_names),
            strict=True,
        )
    ]  # fmt: skip


class _BinaryWriter(Protocol):
    def write(self, data: bytes, /) -> object: ...


def write_lines(
    out: _BinaryWriter, chunks: Iterable[Columns], on_chunk: Callable[[Columns], None] | None
) -> int:
    written = 0
    for cols in chunks:
        lines = to_json_lines(cols)
        out.write(b"\n".join(lines) + b"\n")
        written += len(lines)
        if on_chunk is not None:
            on_chunk(cols)
    return written


def write_jsonl(
    path: str | os.PathLike[str],
    scenario: Scenario,
    *,
    duration_s: float | None = None,
    total_requests: int | None = None,
    chunk_requests: int = 10_000,
    on_chunk: Callable[[Columns], None] | None = None,
) -> int:
    """Write the records as JSON lines to ``path`` (gzip if it ends in ".gz"); return the count.

    One limit is required. The gzip header carries no name or time, so output is byte-identical
    for the same scenario. ``on_chunk`` is called after each chunk is written.
    """
    if duration_s is None and total_requests is None:
        msg = "write_jsonl needs duration_s or total_requests"
        raise SimulationError(msg, value=None)
    chunks = iter_chunks(
        scenario,
        duration_s=duration_s,
        total_requests=total_requests,
        chunk_requests=chunk_requests,
    )
    with open(path, "wb") as raw:
        if not os.fspath(path).endswith(".gz"):
            return write_lines(raw, chunks, on_chunk)
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0
        ) as gz:
            return write_lines(gz, chunks, on_chunk)
