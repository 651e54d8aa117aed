"""`recsys data` commands, driven through Typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.data_cli import app
from shared.errors import DataError


def test_info_json_for_movielens_by_name(
    movielens_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_MOVIELENS_DIR", str(movielens_dir))

    result = CliRunner().invoke(app, ["info", "movielens-100k", "--json"])

    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["interactions"], stats["users"], stats["items"]) == (100_000, 943, 1682)
    assert stats["ratings"] == {"1": 6110, "2": 11370, "3": 27145, "4": 34174, "5": 21201}
    assert stats["density"] == pytest.approx(100_000 / (943 * 1682))
    assert stats["time_range"] == "1997-09-20T03:05:10Z .. 1998-04-22T23:10:38Z"


def test_info_table_for_a_movielens_folder(movielens_dir: Path) -> None:
    result = CliRunner().invoke(app, ["info", str(movielens_dir)])

    assert result.exit_code == 0, result.output
    assert "100,000" in result.stdout
    assert "34,174 (34.2%)" in result.stdout


def test_generate_into_settings_folder_then_inspect_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_DATASETS_DIR", str(tmp_path))
    runner = CliRunner()

    made = runner.invoke(app, ["generate", "synthetic", "--interactions", "5000", "--seed", "4"])
    info = runner.invoke(app, ["info", "synthetic", "--json"])

    assert made.exit_code == 0, made.output
    assert made.stdout.startswith("synthetic: 5,000 interactions, 100 users, 50 items in 1 part")
    assert (tmp_path / "synthetic" / "items.parquet").is_file()
    assert info.exit_code == 0, info.output
    stats = json.loads(info.stdout)
    assert (stats["interactions"], stats["users"]) == (5_000, 100)


def test_info_csv_with_columns(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("u;m;stars\n1;10;4.5\n2;10;0.5\n2;11;4.5\n")

    result = CliRunner().invoke(
        app, ["info", str(path), "--columns", "user=u,item=m,rating=stars", "--json"]
    )

    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["ratings"] == {"0.5": 1, "4.5": 2}
    assert stats["first_timestamp"] == 0  # no timestamp column: row order


def test_info_with_a_wrong_column_raises_data_error(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("u,m\n1,2\n")

    result = CliRunner().invoke(app, ["info", str(path), "--columns", "user=user,item=m"])

    assert isinstance(result.exception, DataError)
    assert "column 'user' (for user) not found; the file has columns: u, m" in str(result.exception)


def test_info_unknown_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["info", str(tmp_path / "netflix-prize")])

    assert isinstance(result.exception, DataError)
    assert "names: movielens-100k, synthetic" in str(result.exception)


def test_generate_refuses_impossible_sizes(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["generate", "synthetic", "-n", "10", "--users", "20", "--out", str(tmp_path / "s")]
    )

    assert result.exit_code == 2
    assert "n_users (20) exceeds n_interactions (10)" in result.output
    assert not (tmp_path / "s").exists()
