"""Consumed records of one partition held as columns (the confluent backend's poll result).

Turning each librdkafka message into a record object cost about as much CPU as decoding it
(issue 13): ten method calls and an object per message in Python. :class:`RecordRun` instead
takes each attribute of a poll's messages with one C-level ``map`` per attribute, and is a
``Sequence`` of :class:`~monitor.kafka.io.Record` for readers that index it (a dead letter's
source record); ingest reads its columns directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

__all__ = ["RecordRun", "RunRecord"]


class RunRecord:
    """One consumed message with the attributes of :class:`~monitor.kafka.io.Record`."""

    __slots__ = ("key", "offset", "timestamp", "value")

    def __init__(self, offset: int, timestamp: int, key: bytes | None, value: bytes | None):
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value

    def __repr__(self) -> str:
        return f"RunRecord(offset={self.offset}, timestamp={self.timestamp})"


class RecordRun(Sequence[RunRecord]):
    """Consecutive records of one partition as four equally long columns, in offset order."""

    __slots__ = ("keys", "offsets", "timestamps", "values")

    def __init__(
        self,
        offsets: list[int],
        timestamps: list[int],
        keys: list[bytes | None],
        values: list[bytes | None],
    ) -> None:
        if not len(offsets) == len(timestamps) == len(keys) == len(values):
            msg = "a record run's columns must be equally long"
            raise ValueError(msg)
        self.offsets = offsets
        self.timestamps = timestamps  # ms since the epoch
        self.keys = keys
        self.values = values

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, i: int) -> RunRecord: ...
    @overload
    def __getitem__(self, i: slice) -> RecordRun: ...
    def __getitem__(self, i: int | slice) -> RunRecord | RecordRun:
        if isinstance(i, slice):
            return RecordRun(self.offsets[i], self.timestamps[i], self.keys[i], self.values[i])
        return RunRecord(self.offsets[i], self.timestamps[i], self.keys[i], self.values[i])
