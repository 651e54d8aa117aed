"""Dense integer ids for users and items, and the CSR interaction matrices built on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class IdIndex:
    """External string ids <-> dense row/column numbers (in first-seen order)."""

    users: pd.Index
    items: pd.Index

    @classmethod
    def from_frames(cls, *frames: pd.DataFrame) -> IdIndex:
        """Index every user and item found in ``frames`` (e.g. train and test)."""
        users = pd.Index(pd.unique(pd.concat([f["user_id"] for f in frames])))
        items = pd.Index(pd.unique(pd.concat([f["item_id"] for f in frames])))
        return cls(users=users, items=items)

    @classmethod
    def factorize(
        cls, frame: pd.DataFrame
    ) -> tuple[IdIndex, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``from_frames(frame)`` and the row and column number of each of its rows, in one
        hashing pass per column: ``pd.factorize`` numbers ids in first-seen order, as
        ``from_frames`` does (``matrix`` looks every id up again: 60 s of the 20M run)."""
        user_codes, users = pd.factorize(frame["user_id"])
        item_codes, items = pd.factorize(frame["item_id"])
        index = cls(users=pd.Index(users), items=pd.Index(items))
        return index, user_codes.astype(np.int64), item_codes.astype(np.int64)

    def matrix_of_codes(
        self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
    ) -> sp.csr_matrix:
        """users x items binary CSR of (row, column) numbers (what ``matrix`` builds)."""
        out = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=self.shape, dtype=np.float32
        )
        out.sum_duplicates()
        out.data[:] = 1.0
        return out

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.users), len(self.items)

    def user_codes(self, ids: pd.Series) -> npt.NDArray[np.int64]:
        return _codes(self.users, ids, "user")

    def item_codes(self, ids: pd.Series) -> npt.NDArray[np.int64]:
        return _codes(self.items, ids, "item")

    def matrix(self, df: pd.DataFrame, weight: str | None = None) -> sp.csr_matrix:
        """users x items CSR; values = ``df[weight]`` (summed over duplicates) or 1.0."""
        rows = self.user_codes(df["user_id"])
        cols = self.item_codes(df["item_id"])
        values = (
            np.ones(len(df), dtype=np.float32)
            if weight is None
            else df[weight].to_numpy(dtype=np.float32)
        )
        out = sp.csr_matrix((values, (rows, cols)), shape=self.shape, dtype=np.float32)
        out.sum_duplicates()
        if weight is None:
            out.data[:] = 1.0  # a repeated pair is still one binary interaction
        return out


def _codes(index: pd.Index, ids: pd.Series, what: str) -> npt.NDArray[np.int64]:
    codes = index.get_indexer(pd.Index(ids))
    if (codes < 0).any():
        missing = ids[codes < 0].iloc[0]
        raise KeyError(f"{what} id {missing!r} is not in the index")
    return codes.astype(np.int64)
