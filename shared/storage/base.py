"""What every storage role has in common: a URL, a health check, a schema, a close."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar


class Store(ABC):
    """Base of the role interfaces; ``role`` names the role in every error message."""

    role: ClassVar[str]

    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    def ping(self) -> None:
        """Raise unless the backing service answers (the factory names role and URL)."""

    def init_schema(self) -> None:
        """Create topics, keyspaces or tables (idempotent); nothing for schemaless stores."""

    def close(self) -> None:
        """Release connections."""
