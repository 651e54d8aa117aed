"""Unique names for test topics, keyspaces and namespaces, remembered for clean-up.

Its own module because pytest loads ``conftest.py`` as ``conftest`` while tests import it as
``tests.conftest``: two module objects, so a registry kept there would be two registries.
"""

from __future__ import annotations

import secrets

CREATED: set[str] = set()


def unique(prefix: str) -> str:
    """A name no other test (or earlier run against the same servers) uses."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    CREATED.add(name)
    return name
