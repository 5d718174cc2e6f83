"""Records: field maps, columnar batches and batch decoding (one JSON object per message)."""

from __future__ import annotations

from monitor.records.columns import Categorical, DecodeResult, RecordBatch, Rejection
from monitor.records.decode import (
    COHORTS,
    MAX_EPOCH_S,
    REASON_BAD_COHORT,
    REASON_BAD_LATENCY,
    REASON_BAD_STATUS,
    REASON_BAD_TIME,
    REASON_BAD_TYPE,
    REASON_INVALID_JSON,
    REASON_MISSING_FIELD,
    REASON_NOT_AN_OBJECT,
    REJECTION_REASONS,
    decode_batch,
)
from monitor.records.fieldmap import (
    PRESETS,
    UNIT_DIVISOR,
    FieldMap,
    LatencyUnit,
    TimeUnit,
    show_value,
)

__all__ = [
    "COHORTS",
    "MAX_EPOCH_S",
    "PRESETS",
    "REASON_BAD_COHORT",
    "REASON_BAD_LATENCY",
    "REASON_BAD_STATUS",
    "REASON_BAD_TIME",
    "REASON_BAD_TYPE",
    "REASON_INVALID_JSON",
    "REASON_MISSING_FIELD",
    "REASON_NOT_AN_OBJECT",
    "REJECTION_REASONS",
    "UNIT_DIVISOR",
    "Categorical",
    "DecodeResult",
    "FieldMap",
    "LatencyUnit",
    "RecordBatch",
    "Rejection",
    "TimeUnit",
    "decode_batch",
    "show_value",
]
