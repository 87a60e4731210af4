"""The threads that run background batches: the lowest CPU priority, and a flag engines read.

A batcher's background workers call `enter_background_thread` when they start; an engine whose
compute runs on threads of its own (CTranslate2) keeps a model copy created from such a thread,
so those compute threads inherit the priority too (see `in_background_thread`).
"""

from __future__ import annotations

import contextlib
import os
import threading

#: The nice value of the threads that run background batches: the kernel gives a CPU to them
#: only when no thread of normal priority wants it, so a live batch running beside a background
#: one gets the cores as if it were alone.
BACKGROUND_NICE = 19

_THREAD = threading.local()


def enter_background_thread() -> None:
    """Makes the calling thread a background one (the initializer of the batchers' background
    workers): lowest CPU priority for it and for every thread it starts from now on (an
    engine's compute threads), and `in_background_thread()` true."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: plain priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    _THREAD.background = True


def in_background_thread() -> bool:
    """Whether the calling thread runs background batches (engines pick their background
    model copy by it)."""
    return getattr(_THREAD, "background", False)
