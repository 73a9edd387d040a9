"""The one source of "now" for the stores, in integer milliseconds."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the Unix epoch, as an ``int``."""
    return time.time_ns() // 1_000_000
