"""The C CRC-32C path of kafka-python is installed with bakemon (issue 13): without it every
fetched record batch is checked by a pure-Python CRC, a third of the fetch speed."""

from __future__ import annotations

import importlib.metadata

from kafka.record import util


def test_kafka_python_uses_the_c_crc32c() -> None:
    requires = importlib.metadata.requires("bakemon") or []
    assert any(r.split(">")[0].strip() == "crc32c" for r in requires)
    assert util.crc32c_c is not None  # kafka-python found the C implementation
    data = b"123456789"
    assert util.calc_crc32c(data) == util.crc32c_py(data) == 0xE3069283  # the check value
