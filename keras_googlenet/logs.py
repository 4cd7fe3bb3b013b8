"""Console and file logging for a run (the seed's LOGFILE and LOGLEVEL)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

LOGGER = "keras_googlenet"
FORMAT = "%(asctime)s %(levelname)s %(message)s"


@contextlib.contextmanager
def run_logging(logfile: str | Path | None, level: str = "INFO"):
    """Logs the `keras_googlenet` logger to stderr and appends to `logfile`, for the block.

    The handlers are removed afterwards, so runs in one process (tests, the demo) do not log
    into each other's files.

    Yields:
        The logger.
    """
    logger = logging.getLogger(LOGGER)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile is not None:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="a", encoding="utf-8"))
    formatter = logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S")
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.setLevel(level)
    logger.propagate = False  # the handlers above are the only output
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate
