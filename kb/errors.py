"""The one error root: every error the project raises for a person to read derives from ``KbqaError``.

Its message says what went wrong and what to do; each command-line entry point catches the root
once and prints the message instead of a traceback.
"""

from __future__ import annotations


class KbqaError(Exception):
    """An error a user can act on; the message says what to do."""
