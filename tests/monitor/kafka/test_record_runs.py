"""Record runs: the confluent backend's poll result, columns that read as a Sequence of Records."""

from __future__ import annotations

import pytest

from monitor.kafka.runs import RecordRun


def _run(n: int) -> RecordRun:
    return RecordRun(
        list(range(100, 100 + n)),
        [1_000 * i for i in range(n)],
        [None if i % 2 else str(i).encode() for i in range(n)],
        [None if i == 3 else b"v%d" % i for i in range(n)],
    )


def test_a_run_reads_as_records_and_slices_into_runs() -> None:
    run = _run(6)
    assert len(run) == 6
    r = run[-1]
    assert (r.offset, r.timestamp, r.key, r.value) == (105, 5_000, None, b"v5")
    part = run[2:5]
    assert isinstance(part, RecordRun)
    assert part.offsets == [102, 103, 104]
    assert [x.value for x in part] == [b"v2", None, b"v4"]
    assert [x.offset for x in run] == run.offsets


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="equally long"):
        RecordRun([1, 2], [0, 0], [None, None], [b""])


class _Msg:
    """The two methods of librdkafka's Message that grouping reads."""

    def __init__(self, topic: str, partition: int, i: int) -> None:
        self._t, self._p, self.i = topic, partition, i

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p


@pytest.mark.parametrize("one_topic", [True, False])
def test_messages_are_grouped_by_partition_keeping_their_order(one_topic: bool) -> None:
    """Interleaved runs of partitions (and topics) come out grouped, each in poll order."""
    import random

    from monitor.kafka.confluent import _by_partition

    rng = random.Random(4)
    topics = ["a"] if one_topic else ["a", "b"]
    msgs = [_Msg(rng.choice(topics), rng.randrange(3), i) for i in range(500)]
    msgs.sort(key=lambda m: m.i // 37)  # runs of various lengths
    got = _by_partition(msgs, _Msg, "a" if one_topic else None)
    want: dict[tuple[str, int], list[int]] = {}
    for m in msgs:
        want.setdefault((m.topic(), m.partition()), []).append(m.i)
    assert {tp: [m.i for m in run] for tp, run in got.items()} == want
    assert _by_partition([], _Msg, "a") == {}
