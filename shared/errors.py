"""Errors that reach a user: each carries one line that names what was wrong."""

from __future__ import annotations


class RecsysError(Exception):
    """Base of every error the project raises on purpose.

    The CLI prints ``str(err)`` as one line and exits with ``exit_code``. The APIs have
    no general mapping: the events endpoint (:mod:`nearline.api`) answers a
    :class:`ServiceUnavailable` with a 503 carrying the same message. Keep messages to
    one line that names the file, column, URL or setting at fault.
    """

    exit_code = 2


class ConfigError(RecsysError):
    """A setting is malformed (unknown URL scheme, bad path, ...)."""


class ServiceUnavailable(RecsysError):
    """A storage role's backing service cannot be reached."""

    exit_code = 3

    def __init__(self, role: str, url: str, reason: str) -> None:
        super().__init__(f"{role} store unreachable at {url}: {reason}")
        self.role = role
        self.url = url
        self.reason = reason


class DataError(RecsysError):
    """Input data is malformed: the message names the file, line or column and the reason."""
