"""User-facing errors and the command-line wrapper that turns them into one line.

A user's mistake (a bad config key, a missing file, a broken image they named) must end in one
clear line on stderr and a non-zero exit, never in a traceback. Every entry point raises
`UserError` for such cases and is run through `run_cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

# Exit code for a user's mistake, like argparse's own usage errors.
EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in what the user gave us: printed as one line, exit code 2 (or `exit_code`)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(UserError):
    """A bad config file or override; the message names the file and the dotted key."""


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv=None) -> int:
    """Runs an entry point, turning `UserError` and Ctrl-C into a one-line message and exit code.

    Returns:
        The process exit code (0 on success).
    """
    try:
        code = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        # A full disk or a permission problem is the user's environment, not our bug: name the
        # file and the reason on one line.
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    return int(code or 0)
