"""``recsys online serve``'s thread counts: one setting for torch, FAISS and numpy's BLAS."""

from __future__ import annotations

import faiss
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from recsys.online_cli import limit_threads


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_limit_threads_sets_every_library_on_the_request_path() -> None:
    before = (torch.get_num_threads(), faiss.omp_get_max_threads(), threadpool_info())
    try:
        limit_threads(1)
        assert torch.get_num_threads() == 1
        assert faiss.omp_get_max_threads() == 1
        assert _blas_threads() == {1}  # numpy's BLAS: the frozen ranker's products
        limit_threads(2)
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (2, 2)
        assert _blas_threads() == {2}
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])
        threadpool_limits({p["prefix"]: p["num_threads"] for p in before[2]})
