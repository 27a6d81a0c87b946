"""The one exception type for mistakes a user can fix.

The CLI turns a UserError into a single line on stderr and exit code 2, never a
traceback; anything else is a bug in torchstarter and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a file, folder or value the user can correct."""

    exit_code = 2


class ParamsError(UserError):
    """Params that are each valid but cannot train together (e.g. class weights with a
    CRF), found by a task: the caller adds the params file's name in front."""
