"""The emulator's clock: wall time scaled from an anchor, plus an offset tests can push.

The formula is the one of the daemon's ScaledClock (copied, not imported, because the
emulator stands apart from the daemon): now = anchor + (wall - anchor) * speed + offset.
A daemon given the same anchor and speed therefore reads the same time as the emulator
without the two ever talking; `advance` moves only the emulator, which is how a test ages
a token by 100 days in a millisecond.
"""

from __future__ import annotations

import time


class EmulatorClock:
    __slots__ = ("anchor", "offset", "speed")

    def __init__(self, speed: float = 1.0, anchor: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self.anchor = time.time() if anchor is None else anchor
        self.offset = 0.0

    def now(self) -> float:
        return self.anchor + (time.time() - self.anchor) * self.speed + self.offset

    def advance(self, seconds: float) -> float:
        """Jump `seconds` of emulated time ahead (negative goes back); returns the new now."""
        self.offset += seconds
        return self.now()

    def set(self, when: float) -> float:
        """Make now() read `when` (a UNIX time) from here on, still ticking at `speed`."""
        self.offset += when - self.now()
        return self.now()

    def snapshot(self) -> dict[str, float]:
        return {
            "now": self.now(),
            "speed": self.speed,
            "anchor": self.anchor,
            "offset": self.offset,
        }
