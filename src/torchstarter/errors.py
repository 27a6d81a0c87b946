"""The one exception type for mistakes a user can fix.

The CLI turns a UserError into a single line on stderr and exit code 2, never a
traceback; anything else is a bug in torchstarter and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a file, folder or value the user can correct."""

    exit_code = 2
