"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, a bad option, or a missing optional dependency/device.

    The message must name the culprit (file, option) and the fix, in one line.
    """

    exit_code = 2
