"""Progress reporting for long-running commands: a tqdm bar on a terminal, plain lines otherwise.

The bar is drawn on the command's stderr when it is a terminal and tqdm is
installed (the ``progress`` extra). Otherwise, or with ``--no-progress``, a
plain line such as ``src -> dst: 2000/10000 conversations, 0 failed`` is
written every tenth of the total (or every 1000 items when the total is
unknown) and at least every ``interval`` seconds, which suits cron logs.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import OutputWrapper

DEFAULT_INTERVAL = 30.0
UNKNOWN_TOTAL_STEP = 1000


def tqdm_available() -> bool:
    """Whether tqdm can be imported."""
    return importlib.util.find_spec("tqdm") is not None


class _WrapperStream:
    """A file-like view of an ``OutputWrapper`` writing text as is (no ending, no style)."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self._wrapper = wrapper

    def write(self, text: str) -> int:
        self._wrapper.write(text, style_func=_unstyled, ending="")
        return len(text)

    def flush(self) -> None:
        self._wrapper.flush()

    def isatty(self) -> bool:
        return self._wrapper.isatty()


def _unstyled(text: str) -> str:
    return text


class Progress:
    """Counts processed items and shows it as a bar or as periodic lines.

    ``update(done, failed)`` takes the running totals; ``message(text)``
    writes a line to ``bar_stream`` (stderr) without garbling the bar;
    ``close()`` finishes the bar or writes the last progress line.
    """

    def __init__(
        self,
        *,
        label: str,
        total: int | None,
        bar_stream: OutputWrapper,
        write_line: Callable[[str], None],
        use_bar: bool,
        unit: str = "conversations",
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self._write_line = write_line
        self._interval = interval
        self._clock = clock
        self._done = 0
        self._failed = 0
        self._bar: Any = None
        self._bar_stream = bar_stream
        self._stream = _WrapperStream(bar_stream)
        if use_bar and bar_stream.isatty() and tqdm_available():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=label,
                unit=" conv",
                file=self._stream,
                dynamic_ncols=True,
                leave=True,
            )
        self._step = max(1, math.ceil(total / 10)) if total else UNKNOWN_TOTAL_STEP
        self._next_mark = self._step
        self._last_line_at = clock()
        self._last_line_done = 0

    @property
    def uses_bar(self) -> bool:
        """True when a tqdm bar is drawn."""
        return self._bar is not None

    def update(self, done: int, failed: int = 0) -> None:
        """Record the running totals of processed and failed items."""
        if self._bar is not None:
            if done > self._done:
                self._bar.update(done - self._done)
            if failed != self._failed:
                self._bar.set_postfix(failed=failed, refresh=False)
            self._done, self._failed = done, failed
            return
        self._done, self._failed = done, failed
        if done >= self._next_mark or self._clock() - self._last_line_at >= self._interval:
            self._line()
            while self._next_mark <= done:
                self._next_mark += self._step

    def message(self, text: str) -> None:
        """Write a line to stderr without breaking the bar."""
        if self._bar is not None:
            self._bar.write(text, file=self._stream)
        else:
            self._bar_stream.write(text)

    def _line(self) -> None:
        total = "?" if self.total is None else str(self.total)
        self._write_line(f"{self.label}: {self._done}/{total} {self.unit}, {self._failed} failed")
        self._last_line_at = self._clock()
        self._last_line_done = self._done

    def close(self) -> None:
        """Finish the bar, or write the final line when the last one is out of date."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._done != self._last_line_done:
            self._line()
