"""The field-map preset names as argparse ``choices``, without importing the records package.

``monitor.records`` pulls in numpy; a command whose ``--preset`` is never looked at (every
client command, ``--help`` of another) must not pay for it. :data:`PRESET_NAMES` reads
:data:`monitor.records.fieldmap.PRESETS` the first time argparse checks or lists a choice, so
presets added there show up here by themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

__all__ = ["PRESET_NAMES", "PresetNames"]


class PresetNames(Sequence[str]):
    """The sorted preset names, looked up on first use."""

    def _names(self) -> list[str]:
        from monitor.records.fieldmap import PRESETS

        return sorted(PRESETS)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __repr__(self) -> str:
        return repr(self._names())


PRESET_NAMES = PresetNames()
