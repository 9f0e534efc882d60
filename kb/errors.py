"""The one error root: every error the project raises for a person to read derives from ``KbqaError``.

Its message says what went wrong and what to do; each command-line entry point catches the root
once and prints the message instead of a traceback.
"""

from __future__ import annotations


class KbqaError(Exception):
    """An error a user can act on; the message says what to do."""


class ActionError(KbqaError):
    """An action on a document or a conversation that cannot be done as asked.

    ``status`` is the HTTP status an API answers with (400 bad input, 404 unknown, 409 a name that
    exists, 413 too large, 507 no room on the disk); each subclass names its usual one in ``default_status``.
    """

    default_status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = self.default_status if status is None else status
