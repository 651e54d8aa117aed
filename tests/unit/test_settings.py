"""The one settings class: storage URL schemes checked per role at load, the online API's
fields read from ``RECSYS_*`` variables, experiment arms checked against the known ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from online.experiments import ARMS
from shared.settings import ARM_NAMES, Settings
from shared.storage.candidates import CandidateStore
from shared.storage.event_log import EventLog
from shared.storage.factory import IMPLEMENTATIONS
from shared.storage.history import EventHistoryStore
from shared.storage.user_state import UserStateStore

URL_FIELDS = ("event_log_url", "user_state_url", "candidates_url", "history_url", "registry_url")


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no RECSYS_* variable of the machine running the tests."""
    for field in Settings.model_fields:
        monkeypatch.delenv(f"RECSYS_{field.upper()}", raising=False)


def load(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("field", "url", "allowed"),
    [
        ("event_log_url", "redis://127.0.0.1:6379/0", "kafka://, sqlite://, memory://"),
        ("user_state_url", "kafka://x", "redis://, sqlite://, memory://"),
        ("candidates_url", "redis://127.0.0.1:6379/0", "cassandra://, sqlite://, memory://"),
        ("history_url", "kafka://127.0.0.1:9092/events", "cassandra://, sqlite://, memory://"),
        ("registry_url", "sqlite:///var/models.db", "file://"),
        ("user_state_url", "var/user-state.db", "redis://, sqlite://, memory://"),
    ],
)
def test_wrong_scheme_is_rejected_naming_field_and_schemes(
    field: str, url: str, allowed: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        load(**{field: url})
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert allowed in str(caught.value) and repr(url) in str(caught.value)


def test_wrong_scheme_from_the_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_USER_STATE_URL", "kafka://x")
    with pytest.raises(ValidationError, match="user_state_url"):
        load()


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("event_log_url", "kafka://127.0.0.1:9092/events"),
        ("event_log_url", "kafka://kafka-1:9092,kafka-2:9092/events"),
        ("event_log_url", "sqlite:///var/event-log.db"),
        ("event_log_url", "memory://"),
        ("user_state_url", "redis://127.0.0.1:6379/0"),
        ("user_state_url", "sqlite:////abs/user-state.db"),
        ("user_state_url", "memory://state"),
        ("candidates_url", "cassandra://127.0.0.1:9042/recsys"),
        ("candidates_url", "sqlite:///var/candidates.db"),
        ("candidates_url", "memory://"),
        ("history_url", "cassandra://127.0.0.1:9042/recsys"),
        ("history_url", "sqlite:///var/history.db"),
        ("history_url", "memory://history"),
        ("registry_url", "file://var/models"),
        ("registry_url", "file:///abs/models"),
    ],
)
def test_real_and_embedded_urls_are_kept_unchanged(field: str, url: str) -> None:
    assert getattr(load(**{field: url}), field) == url


def test_unset_urls_are_embedded_stores_under_home(tmp_path: Path) -> None:
    settings = load(home=tmp_path)
    home = tmp_path.as_posix()
    assert settings.event_log_url == f"sqlite:///{home}/event-log.db"
    assert settings.user_state_url == f"sqlite:///{home}/user-state.db"
    assert settings.candidates_url == f"sqlite:///{home}/candidates.db"
    assert settings.history_url == f"sqlite:///{home}/history.db"
    assert settings.registry_url == f"file://{home}/models"


ROLE_FIELDS = {
    EventLog.role: "event_log_url",
    UserStateStore.role: "user_state_url",
    CandidateStore.role: "candidates_url",
    EventHistoryStore.role: "history_url",
}


@pytest.mark.parametrize("role", sorted(ROLE_FIELDS))
def test_settings_accept_exactly_the_schemes_the_factory_opens(role: str) -> None:
    field = ROLE_FIELDS[role]
    opened = set(IMPLEMENTATIONS[role])
    for scheme in opened:
        assert getattr(load(**{field: f"{scheme}://x"}), field) == f"{scheme}://x"
    all_schemes = {s for impls in IMPLEMENTATIONS.values() for s in impls} | {"file"}
    for scheme in all_schemes - opened:
        with pytest.raises(ValidationError, match=field):
            load(**{field: f"{scheme}://x"})


def test_online_fields_are_read_from_recsys_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "RECSYS_BUDGET_MS": "120",
        "RECSYS_STORE_TIMEOUT_MS": "15",
        "RECSYS_ADMIN_TOKEN": "s3cret",
        "RECSYS_RELOAD_INTERVAL_S": "2.5",
        "RECSYS_CANDIDATES_CACHE_SIZE": "0",
        "RECSYS_STORE_THREADS": "4",
        "RECSYS_DEVICE": "cpu",
        "RECSYS_EXPERIMENT_SALT": "exp2",
        "RECSYS_EXPERIMENT_ARMS": '{"control": 0.5, "blend": 0.5}',
        "RECSYS_EXPERIMENT_BUNDLES": '{"challenger": "v2"}',
        "RECSYS_FRESH_QUOTA": "0",
        "RECSYS_GENRE_CAP": "1",
        "RECSYS_LOG_IMPRESSIONS": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load()
    assert settings.budget_ms == 120.0 and settings.store_timeout_ms == 15.0
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)  # a secret: never printed
    assert settings.reload_interval_s == 2.5
    assert settings.candidates_cache_size == 0 and settings.store_threads == 4
    assert settings.device == "cpu" and settings.experiment_salt == "exp2"
    assert settings.experiment_arms == {"control": 0.5, "blend": 0.5}
    assert settings.experiment_bundles == {"challenger": "v2"}
    assert settings.fresh_quota == 0 and settings.genre_cap == 1.0
    assert settings.log_impressions is False


def test_online_defaults() -> None:
    settings = load()
    assert settings.budget_ms == 80.0 and settings.store_timeout_ms == 30.0
    assert settings.admin_token is None and settings.device == "auto"
    assert settings.experiment_arms == {"control": 1.0} and settings.experiment_bundles == {}
    assert settings.log_impressions is True


@pytest.mark.parametrize(
    "arms",
    [{"nope": 1.0}, {}, {"control": -1.0, "blend": 2.0}, {"control": 0.0}],
)
def test_bad_arms_are_rejected(arms: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="experiment_arms"):
        load(experiment_arms=arms)


def test_bad_arms_from_the_environment_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_EXPERIMENT_ARMS", '{"treatment": 1}')
    with pytest.raises(ValidationError, match="arms must be among"):
        load()


def test_bundles_bound_to_unknown_arms_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown arms"):
        load(experiment_bundles={"treatment": "v1"})


def test_device_is_checked() -> None:
    with pytest.raises(ValidationError, match="device"):
        load(device="gpu")


def test_every_arm_name_has_an_arm() -> None:
    assert set(ARMS) == set(ARM_NAMES)
