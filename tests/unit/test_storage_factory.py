"""Picking implementations by URL, and the one-line errors for bad or unreachable URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError, ServiceUnavailable
from shared.settings import Settings
from shared.storage import factory
from shared.storage.sqlite.candidates import SqliteCandidateStore
from shared.storage.sqlite.event_log import SqliteEventLog
from shared.storage.sqlite.history import SqliteEventHistoryStore
from shared.storage.sqlite.user_state import SqliteUserStateStore


def test_scheme_picks_the_implementation(tmp_path: Path) -> None:
    log = factory.open_event_log(f"sqlite:///{tmp_path}/log.db")
    assert isinstance(log, SqliteEventLog)
    assert (tmp_path / "log.db").exists()
    log.close()
    assert isinstance(factory.open_candidates("memory://"), SqliteCandidateStore)


@pytest.mark.parametrize(
    ("opener", "role"),
    [
        (factory.open_event_log, "event log"),
        (factory.open_candidates, "candidates"),
        (factory.open_history, "event history"),
    ],
)
def test_unknown_scheme_names_role_and_url(opener: object, role: str) -> None:
    with pytest.raises(ConfigError) as err:
        opener("mongodb://127.0.0.1/x")  # type: ignore[operator]
    message = str(err.value)
    assert role in message and "mongodb://127.0.0.1/x" in message and "\n" not in message


def test_malformed_sqlite_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sqlite:///relative"):
        factory.open_history("sqlite://host/db")


def _settings(tmp_path: Path, **urls: str) -> Settings:
    defaults = {
        "event_log_url": f"sqlite:///{tmp_path}/log.db",
        "user_state_url": f"sqlite:///{tmp_path}/state.db",
        "candidates_url": f"sqlite:///{tmp_path}/cand.db",
        "history_url": f"sqlite:///{tmp_path}/hist.db",
    }
    return Settings(**{**defaults, **urls})


def test_embedded_defaults_open_and_answer(tmp_path: Path) -> None:
    stores = factory.open_stores(_settings(tmp_path))
    try:
        stores.init_schema()
        assert [type(s) for s in stores.all()] == [
            SqliteEventLog,
            SqliteUserStateStore,
            SqliteCandidateStore,
            SqliteEventHistoryStore,
        ]
        assert sorted(p.name for p in tmp_path.glob("*.db")) == [
            "cand.db",
            "hist.db",
            "log.db",
            "state.db",
        ]
        assert stores.user_state.get("nobody") is None  # an empty store answers a read
        stores.ping()
    finally:
        stores.close()


@pytest.mark.parametrize(
    ("field", "url", "role"),
    [
        ("user_state_url", "redis://127.0.0.1:1/0", "user state"),
        ("candidates_url", "cassandra://127.0.0.1:1/recsys", "candidates"),
        ("history_url", "cassandra://127.0.0.1:1/recsys", "event history"),
        ("event_log_url", "kafka://127.0.0.1:1/events", "event log"),
    ],
)
def test_unreachable_service_fails_at_start_with_one_line(
    tmp_path: Path, field: str, url: str, role: str
) -> None:
    with pytest.raises(ServiceUnavailable) as err:
        factory.open_stores(_settings(tmp_path, **{field: url}))
    message = str(err.value)
    assert message.startswith(f"{role} store unreachable at {url}: ")
    assert "\n" not in message
