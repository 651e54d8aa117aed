"""Open a dataset by name (``movielens-100k``, ``synthetic``) or by path, whatever its format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shared.data.interactions import load_interactions
from shared.data.movielens import load_ratings
from shared.data.sources import DATASET_NAMES, MOVIELENS_100K, SYNTHETIC
from shared.data.synthetic_io import INTERACTIONS_DIR, is_synthetic_dir
from shared.errors import DataError


@dataclass(frozen=True)
class DatasetPaths:
    """Where named datasets live (from Settings: ``movielens_dir``, ``datasets_dir``)."""

    movielens_dir: Path
    datasets_dir: Path

    @property
    def synthetic_dir(self) -> Path:
        return self.datasets_dir / SYNTHETIC


def load_dataset(
    spec: str,
    paths: DatasetPaths,
    columns: Mapping[str, str] | None = None,
    *,
    delimiter: str | None = None,
) -> tuple[pd.DataFrame, str]:
    """Return ``(interactions, source)`` for a dataset name or a path.

    A path may be a MovieLens 100K folder (holding ``u.data``), a folder written by
    ``write_synthetic``, or any file or folder :func:`load_interactions` reads (``columns``
    and ``delimiter`` apply only to those).
    """
    if spec == MOVIELENS_100K:
        return load_ratings(paths.movielens_dir), str(paths.movielens_dir / "u.data")
    if spec == SYNTHETIC:
        if not is_synthetic_dir(paths.synthetic_dir):
            raise DataError(
                f"{paths.synthetic_dir}: no synthetic dataset; create one with "
                "`recsys data generate synthetic --interactions N`"
            )
        return _from_path(paths.synthetic_dir, columns, delimiter)
    path = Path(spec)
    if not path.exists():
        raise DataError(
            f"{spec}: no such file, folder or dataset name (names: {', '.join(DATASET_NAMES)})"
        )
    return _from_path(path, columns, delimiter)


def _from_path(
    path: Path, columns: Mapping[str, str] | None, delimiter: str | None
) -> tuple[pd.DataFrame, str]:
    if path.is_dir() and (path / "u.data").is_file():
        return load_ratings(path), str(path / "u.data")
    if is_synthetic_dir(path):
        folder = path / INTERACTIONS_DIR
        return load_interactions(folder), str(folder)
    return load_interactions(path, columns, delimiter=delimiter), str(path)
