"""Kafka: the Source/Sink protocols and their kafka-python implementation, topics, followers, the embedded broker."""

from __future__ import annotations
