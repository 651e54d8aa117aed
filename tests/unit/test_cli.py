"""The CLI root: one line on stderr and an exit code for every error a user can cause."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys.cli import main
from shared.registry import ModelRegistry


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.argv", ["recsys", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    code = exit_info.value.code
    return code if isinstance(code, int) else 1


def test_unknown_scheme_exits_2_naming_role_and_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    monkeypatch.setenv("RECSYS_CANDIDATES_URL", "mongodb://127.0.0.1/x")
    assert _run(["storage", "init"], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: setting RECSYS_CANDIDATES_URL: URL scheme must be one of cassandra://, "
        "sqlite://, memory://; got 'mongodb://127.0.0.1/x'"
    )
    assert len(err.splitlines()) == 1


def test_unreachable_service_exits_3_naming_role_and_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    monkeypatch.setenv("RECSYS_USER_STATE_URL", "redis://127.0.0.1:1/0")
    assert _run(["storage", "init"], monkeypatch) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: user state store unreachable at redis://127.0.0.1:1/0: ")
    assert len(err.splitlines()) == 1


def test_storage_check_reports_each_role(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    monkeypatch.setenv("RECSYS_HISTORY_URL", "cassandra://127.0.0.1:1/recsys")
    assert _run(["storage", "check", "--json"], monkeypatch) == 3
    out = capsys.readouterr().out
    assert '"event log"' in out and '"status": "ok"' in out
    assert "event history store unreachable at cassandra://127.0.0.1:1/recsys" in out


def test_malformed_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECSYS_USER_STATE_TTL_S", "a week")
    assert _run(["models", "list"], monkeypatch) == 2
    assert capsys.readouterr().err.startswith("error: setting RECSYS_USER_STATE_TTL_S: ")


def _two_bundles(home: Path) -> tuple[ModelRegistry, list[str]]:
    """A registry under ``home`` (the default registry URL) holding two empty bundles."""
    registry = ModelRegistry(f"file://{home}/models")
    versions = []
    for _ in range(2):
        with registry.create(None, "fp", {}) as bundle:
            versions.append(bundle.version)
    return registry, versions


def test_models_round_trip(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    registry, versions = _two_bundles(tmp_path)
    assert _run(["models", "promote", versions[0]], monkeypatch) == 0  # nothing live yet
    # Bundles without a holdout: the gate has nothing to compare on and keeps the live one.
    assert _run(["models", "promote", versions[1]], monkeypatch) == 1
    assert "not promoted: no holdout to compare on" in capsys.readouterr().err
    assert _run(["models", "promote", versions[1], "--force"], monkeypatch) == 0
    assert "(forced past the gate)" in capsys.readouterr().out
    assert _run(["models", "rollback"], monkeypatch) == 0
    assert f"live bundle is now {versions[0]}" in capsys.readouterr().out
    actions = [(d["action"], d["version"]) for d in registry.decisions()]
    assert actions == [
        ("promote", versions[0]),
        ("refuse", versions[1]),
        ("promote-forced", versions[1]),
        ("rollback", versions[0]),
    ]
    assert _run(["models", "history", "--json"], monkeypatch) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [d["action"] for d in shown] == [a for a, _ in actions]
    assert _run(["models", "show", "nope"], monkeypatch) == 2
    assert "no bundle 'nope'" in capsys.readouterr().err


def test_models_promote_activates_the_bundles_candidates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bundle staged with ``--no-promote`` goes live with its own candidate version."""
    from shared.settings import Settings
    from shared.storage.candidates import Candidates
    from shared.storage.factory import open_candidates

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    registry, versions = _two_bundles(tmp_path)
    store = open_candidates(Settings().candidates_url)
    try:
        store.init_schema()
        for version in versions:
            store.write(version, [Candidates("u1", [f"i-{version}"], [1.0])])
        store.activate(versions[0])
    finally:
        store.close()

    assert _run(["models", "promote", versions[1]], monkeypatch) == 0

    store = open_candidates(Settings().candidates_url)
    try:
        assert store.live_version() == versions[1]
        live = store.get("u1")
        assert live is not None and live.items == [f"i-{versions[1]}"]
    finally:
        store.close()
    live_bundle = registry.live()
    assert live_bundle is not None and live_bundle.version == versions[1]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--params", "{tmp}/none.json"], "error: --params {tmp}/none.json: file not found"),
        (["--params", "{tmp}/p.json", "--tune"], "error: give --params FILE or --tune, not both"),
        (["--trials", "3"], "error: --trials, --minutes and --study apply with --tune"),
    ],
)
def test_offline_run_params_errors_exit_2_before_any_work(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    flags: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "var"))
    argv = ["offline", "run", "--dataset", "synthetic", *(f.format(tmp=tmp_path) for f in flags)]
    assert _run(argv, monkeypatch) == 2
    assert capsys.readouterr().err.strip() == message.format(tmp=tmp_path)
    assert not (tmp_path / "var").exists()  # no pipeline, no registry, nothing written
