"""Progress on stderr, drawn only when stderr is a terminal (scripts and pipes see nothing).

``Progress`` is a library progress callback, ``progress(stage, done, total)``, that draws one line:
``ingest  [#######.......]  2,400/5,452  812/s  ETA 0:04``; before the first count (reading the input, loading a
model) and while a step gives no counts, it shows what it waits for and the seconds spent. ``spinner(label)`` is the
same line for a step that reports no counts (loading a model, fitting).
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import Any, Callable, TextIO

WIDTH = 24  # characters of the bar
WINDOW_S = 30.0  # the rate is measured over the last seconds (from the first count: a model loading is left out)
SPIN = "|/-\\"


def enabled(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def rate_text(per_s: float) -> str:
    return f"{per_s:,.0f}/s" if per_s >= 10 else f"{per_s:.2g}/s"


class Progress:
    """A progress line for one step. Use as a context manager; call it as ``progress(stage, done, total)``."""

    def __init__(self, label: str, waiting: str = "", stream: TextIO | None = None, tick_s: float = 0.2,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.waiting = label, waiting
        self.clock = clock
        self.stream = stream or sys.stderr
        self.on = enabled(self.stream)
        self.tick_s = tick_s
        self.start = clock()
        self.done = self.total = 0
        self.stage = ""  # shown after the label when a step has several (fit: "vectors", then "fit")
        self.counted = False  # a count has come
        self.first = (self.start, 0)  # (time, done) of the first count of this pass
        self.points: deque[tuple[float, int]] = deque()  # (time, done) within WINDOW_S, for the rate
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0
        self._spin = 0

    # the callback ---------------------------------------------------------------------------------------------
    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.on:
            return
        with self._lock:
            now = self.clock()
            if not self.counted or done < self.done or stage != self.stage:  # a new pass: the rate starts again
                self.points.clear()
                self.first = (now, done)
            self.counted = True
            self.stage = stage
            self.done, self.total = done, total
            self.points.append((now, done))
            while len(self.points) > 2 and now - self.points[1][0] >= WINDOW_S:  # one point at or before the window
                self.points.popleft()
            self._draw(now)

    # the line -------------------------------------------------------------------------------------------------
    def rate(self) -> float | None:
        if len(self.points) < 2:
            return None
        (t0, d0), (t1, d1) = self.points[0], self.points[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 and d1 > d0 else None

    def line(self, now: float) -> str:
        elapsed = now - self.start
        if not self.counted:
            self._spin += 1
            what = f"{self.waiting} " if self.waiting else ""
            return f"{self.label}  {what}{SPIN[self._spin % len(SPIN)]} {elapsed:.0f} s"
        total = max(self.total, 1)
        filled = int(WIDTH * min(self.done, total) / total)
        label = f"{self.label} ({self.stage})" if self.stage and self.stage not in self.label.split() else self.label
        parts = [label, "[" + "#" * filled + "." * (WIDTH - filled) + "]", f"{self.done:,}/{self.total:,}"]
        rate = self.rate()
        if rate:
            parts += [rate_text(rate), f"ETA {duration(max(self.total - self.done, 0) / rate)}"]
        else:
            parts.append(f"{elapsed:.0f} s")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        text = self.line(now)
        pad = max(self._width - len(text), 0)
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            with self._lock:
                self._draw(self.clock())

    # the step -------------------------------------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        if self.on:
            self.start = self.clock()
            self._thread = threading.Thread(target=self._run, name="embstore-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if not self.on:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            elapsed = self.clock() - self.start
            if self.counted and exc_type is None:
                t0, d0 = self.first  # the rate of the counted part (not of reading the input, loading a model)
                spent = self.clock() - t0
                per_s = f" ({rate_text((self.done - d0) / spent)})" if spent > 0 and self.done > d0 else ""
                text = f"{self.label}  {self.done:,}/{self.total:,} in {elapsed:.1f} s{per_s}"
            elif exc_type is None:
                text = f"{self.label}  done in {elapsed:.1f} s"
            else:
                text = f"{self.label}  stopped after {elapsed:.1f} s"
            self.stream.write("\r" + text + " " * max(self._width - len(text), 0) + "\r" + text + "\n")
            self.stream.flush()


def spinner(label: str, stream: TextIO | None = None) -> Progress:
    """A line for a step that reports no counts: ``label  | 3 s``, then ``label  done in 3.2 s``."""
    return Progress(label, stream=stream)
