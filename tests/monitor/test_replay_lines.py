"""The replay's line reader: chunked reads split where the lines are, whatever the chunking."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest

import monitor.replay as replay_mod
from monitor.errors import InputError
from monitor.replay import iter_line_batches


class Trickle(io.RawIOBase):
    """A pipe that hands out at most ``step`` bytes per read."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.pos = data, step, 0

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        out = self.data[self.pos : self.pos + min(self.step, n if n > 0 else self.step)]
        self.pos += len(out)
        return out


@pytest.mark.parametrize("seed", range(8))
def test_lines_come_out_as_a_line_split_gives_them(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(int(rng.integers(0, 400))):
        kind = rng.integers(0, 5)
        body = b'{"x":%d}' % rng.integers(0, 10**9) if kind else b"  "
        parts.append(body + (b"\r\n" if kind == 1 else b"\n"))
    data = b"".join(parts) + (b'{"last":1}' if seed % 2 else b"")
    want = [ln.strip() for ln in data.split(b"\n") if ln.strip()]
    monkeypatch.setattr(replay_mod, "_READ_BYTES", int(rng.integers(1, 64)))
    size = int(rng.integers(1, 50))
    for stream in (io.BytesIO(data), Trickle(data, int(rng.integers(1, 30)))):
        batches = list(iter_line_batches(stream, size))  # type: ignore[arg-type]
        assert [ln for b in batches for ln in b] == want
        assert all(0 < len(b) <= size for b in batches)
        assert all(len(b) == size for b in batches[:-1])


def test_a_truncated_gzip_file_is_an_input_error() -> None:
    raw = gzip.compress(b'{"a":1}\n' * 5000)[:-20]
    with pytest.raises(InputError, match="cannot read log"):
        list(iter_line_batches(gzip.GzipFile(fileobj=io.BytesIO(raw)), 100))  # type: ignore[arg-type]
