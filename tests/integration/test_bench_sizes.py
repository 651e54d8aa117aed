"""``recsys bench sizes`` on the real Redis and Cassandra, small: the sizes grow with what
is stored, and the Cassandra tables are read from flushed SSTables."""

from __future__ import annotations

import pytest

from recsys.bench.sizes import cassandra_sizes, redis_sizes
from shared.settings import Settings
from tests.conftest import CASSANDRA_URL, REDIS_URL

pytestmark = [pytest.mark.redis, pytest.mark.cassandra, pytest.mark.timeout(300)]


def test_sizes_grow_with_what_is_stored() -> None:
    redis = redis_sizes(REDIS_URL, dim=16, users=3)
    sizes = [redis["bytes_per_user"][str(n)] for n in (10, 100, 1000, 8192)]
    assert sizes == sorted(sizes) and sizes[0] > 0
    assert sizes[-1] > 20 * sizes[1]  # the dedupe set dominates a busy user
    cassandra = cassandra_sizes(
        CASSANDRA_URL,
        candidates=50,
        events=5_000,
        users=200,
        cache_dir=Settings().cache_dir,
        jmx_port=7199,
    )
    assert cassandra["bytes_per_candidate_list"] > 50 * 4  # at least a float per candidate
    assert 10 < cassandra["bytes_per_history_event"] < 1000
