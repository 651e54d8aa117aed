"""Locate the first bad line of a delimited text file.

Loaders parse whole files with pandas' C parser (fast) and only when that fails, or the
parsed values break a rule, walk the file line by line here to say which line is wrong
and why. The slow walk therefore costs nothing on good files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from shared.errors import DataError

# A field check returns None when the value is acceptable, else the reason it is not.
FieldCheck = Callable[[str], str | None]

_SEPARATOR_NAMES = {"\t": "tabs", "|": "'|'", ",": "commas", ";": "semicolons"}


def first_bad_line(
    path: Path, *, sep: str, checks: Sequence[FieldCheck], encoding: str = "latin-1"
) -> tuple[int, str] | None:
    """Return ``(1-based line number, reason)`` of the first line failing ``checks``.

    Blank lines are skipped, as pandas skips them, but still counted.
    """
    text = path.read_bytes().decode(encoding, errors="replace")
    sep_name = _SEPARATOR_NAMES.get(sep, repr(sep))
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line:
            continue
        fields = line.split(sep)
        if len(fields) != len(checks):
            return (
                number,
                f"expected {len(checks)} fields separated by {sep_name}, found {len(fields)}",
            )
        for value, check in zip(fields, checks, strict=True):
            reason = check(value)
            if reason is not None:
                return number, reason
    return None


def raise_first_bad_line(
    path: Path, *, sep: str, checks: Sequence[FieldCheck], cause: Exception | None = None
) -> NoReturn:
    """Raise DataError for the first bad line; fall back to ``cause`` if every line passes."""
    found = first_bad_line(path, sep=sep, checks=checks)
    if found is not None:
        number, reason = found
        raise DataError(f"{path}: line {number}: {reason}") from cause
    detail = f": {cause}" if cause is not None else ""
    raise DataError(f"{path}: could not be parsed{detail}") from cause


def integer_field(label: str, low: int = 0, high: int = 2**63 - 1) -> FieldCheck:
    """Check that a field is an integer within ``low..high``."""

    def check(value: str) -> str | None:
        try:
            number = int(value)
        except ValueError:
            return f"{label} {value!r} is not an integer"
        if not low <= number <= high:
            return f"{label} {number} is out of range {low}..{high}"
        return None

    return check


def any_field(_value: str) -> str | None:
    """Accept any value (free text such as titles and URLs)."""
    return None


def one_of(label: str, allowed: Sequence[str]) -> FieldCheck:
    """Check that a field is one of ``allowed``."""

    def check(value: str) -> str | None:
        if value in allowed:
            return None
        return f"{label} {value!r} is not one of {', '.join(allowed)}"

    return check
