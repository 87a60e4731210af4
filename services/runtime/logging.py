"""structlog set-up: JSON lines for machines, a console renderer on a terminal. While tracing is
on (speechmesh.runtime.tracing), a line logged under a span carries its trace_id and span_id."""

from __future__ import annotations

import logging
import sys

import structlog

from speechmesh.runtime import tracing

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            tracing.add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _quiet_transformers(level)


def _quiet_transformers(level: str) -> None:
    """transformers' per-call generation warnings and load bars are noise in a server log."""
    from transformers.utils import logging as hf_logging

    if level != "debug":
        hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
