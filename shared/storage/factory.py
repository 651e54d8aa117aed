"""Pick a storage implementation by the scheme of its URL.

The map names classes by import path and imports them only when asked, so a driver that
is not needed (cassandra-driver for an embedded demo) is never imported, and an unknown
scheme fails at start-up with one line naming the role and the URL.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from shared.errors import ConfigError, RecsysError, ServiceUnavailable
from shared.settings import Settings
from shared.storage.base import Store
from shared.storage.candidates import CandidateStore
from shared.storage.event_log import EventLog
from shared.storage.history import EventHistoryStore
from shared.storage.user_state import UserStateStore

_EMBEDDED = "shared.storage.sqlite"
IMPLEMENTATIONS: dict[str, dict[str, str]] = {
    EventLog.role: {
        "kafka": "shared.storage.kafka_log:KafkaEventLog",
        "sqlite": f"{_EMBEDDED}.event_log:SqliteEventLog",
        "memory": f"{_EMBEDDED}.event_log:SqliteEventLog",
    },
    UserStateStore.role: {
        "redis": "shared.storage.redis_state:RedisUserStateStore",
        "sqlite": f"{_EMBEDDED}.user_state:SqliteUserStateStore",
        "memory": f"{_EMBEDDED}.user_state:SqliteUserStateStore",
    },
    CandidateStore.role: {
        "cassandra": "shared.storage.cassandra.candidates:CassandraCandidateStore",
        "sqlite": f"{_EMBEDDED}.candidates:SqliteCandidateStore",
        "memory": f"{_EMBEDDED}.candidates:SqliteCandidateStore",
    },
    EventHistoryStore.role: {
        "cassandra": "shared.storage.cassandra.history:CassandraEventHistoryStore",
        "sqlite": f"{_EMBEDDED}.history:SqliteEventHistoryStore",
        "memory": f"{_EMBEDDED}.history:SqliteEventHistoryStore",
    },
}


def _open(role: str, url: str, **kwargs: Any) -> Any:
    scheme = urlsplit(url).scheme
    impls = IMPLEMENTATIONS[role]
    if scheme not in impls:
        known = ", ".join(f"{s}://" for s in impls)
        raise ConfigError(f"{role} store: unknown URL scheme in {url!r} (expected one of {known})")
    module_name, _, class_name = impls[scheme].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        store = cls(url, **kwargs)
    except RecsysError:
        raise
    except Exception as err:  # a driver's own error on connect: name the role and URL
        raise ServiceUnavailable(role, url, f"{type(err).__name__}: {err}") from err
    return store


def open_event_log(url: str) -> EventLog:
    return cast(EventLog, _open(EventLog.role, url))


def open_user_state(url: str, ttl_s: int, recent_cap: int) -> UserStateStore:
    return cast(UserStateStore, _open(UserStateStore.role, url, ttl_s=ttl_s, recent_cap=recent_cap))


def open_candidates(url: str) -> CandidateStore:
    return cast(CandidateStore, _open(CandidateStore.role, url))


def open_history(url: str) -> EventHistoryStore:
    return cast(EventHistoryStore, _open(EventHistoryStore.role, url))


def role_urls(settings: Settings) -> dict[str, str]:
    """Each role's URL from settings, in the order the roles are opened."""
    return {
        EventLog.role: settings.event_log_url,
        UserStateStore.role: settings.user_state_url,
        CandidateStore.role: settings.candidates_url,
        EventHistoryStore.role: settings.history_url,
    }


def open_role(role: str, settings: Settings) -> Store:
    """Open one role's store from settings (not yet pinged)."""
    url = role_urls(settings)[role]
    if role == UserStateStore.role:
        return open_user_state(url, settings.user_state_ttl_s, settings.recent_items_cap)
    return cast(Store, _open(role, url))


def ping(store: Store) -> None:
    """Raise ``ServiceUnavailable`` naming role and URL unless ``store`` answers."""
    try:
        store.ping()
    except RecsysError:
        raise
    except Exception as err:  # a driver's own error: name the role and URL
        raise ServiceUnavailable(store.role, store.url, f"{type(err).__name__}: {err}") from err


@dataclass
class Stores:
    """Every storage role, opened from settings; close() releases them all."""

    event_log: EventLog
    user_state: UserStateStore
    candidates: CandidateStore
    history: EventHistoryStore

    def all(self) -> list[Store]:
        return [self.event_log, self.user_state, self.candidates, self.history]

    def ping(self) -> None:
        """Raise ``ServiceUnavailable`` naming the first role that does not answer."""
        for store in self.all():
            ping(store)

    def init_schema(self) -> None:
        """Create topics, keyspaces and tables (idempotent)."""
        for store in self.all():
            store.init_schema()

    def close(self) -> None:
        for store in self.all():
            store.close()


def open_stores(settings: Settings) -> Stores:
    """Open every role and check it answers; fails with one line naming role and URL."""
    opened: list[Any] = []
    try:
        for role in role_urls(settings):
            opened.append(open_role(role, settings))
        stores = Stores(*opened)
        stores.ping()
    except BaseException:
        for store in opened:
            store.close()
        raise
    return stores
