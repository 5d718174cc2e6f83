"""Kafka: the Source/Sink protocols, their kafka-python and in-memory implementations, topics, followers, the embedded broker."""

from __future__ import annotations
