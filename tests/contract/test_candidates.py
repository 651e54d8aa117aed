"""Contract of the candidate role, run against every implementation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import RecsysError
from shared.storage.candidates import Candidates, CandidateStore, UnknownVersion
from shared.storage.factory import open_candidates


@pytest.fixture(params=["memory", "sqlite", pytest.param("cassandra", marks=pytest.mark.cassandra)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CandidateStore]:
    if request.param == "cassandra":
        url = request.getfixturevalue("cassandra_keyspace_url")
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/candidates.db"
    else:
        url = "memory://candidates"
    s = open_candidates(url)
    s.init_schema()
    yield s
    s.close()


def rows(n: int, tag: str) -> list[Candidates]:
    return [
        Candidates(
            f"user{u}", [f"{tag}{u}-{k}" for k in range(3)], [1.0, 0.5, 0.25], ["als", "als", "pop"]
        )
        for u in range(n)
    ]


def test_nothing_is_live_at_first(store: CandidateStore) -> None:
    assert store.live_version() is None
    assert store.get("user0") is None


def test_written_rows_are_invisible_until_activated(store: CandidateStore) -> None:
    assert store.write("v1", rows(10, "a")) == 10
    assert store.get("user3") is None  # not live yet
    assert store.get("user3", version="v1") == rows(10, "a")[3]
    store.activate("v1")
    assert store.live_version() == "v1"
    assert store.get("user3") == rows(10, "a")[3]


def test_activation_switches_readers_in_one_step(store: CandidateStore) -> None:
    store.write("v1", rows(5, "a"))
    store.activate("v1")
    store.write("v2", rows(5, "b"))
    got = store.get("user1")
    assert got is not None and got.items[0] == "a1-0"
    store.activate("v2")
    got = store.get("user1")
    assert got is not None and got.items[0] == "b1-0"
    assert store.get("user1", version="v1") == rows(5, "a")[1]


def test_unknown_version_cannot_be_activated(store: CandidateStore) -> None:
    with pytest.raises(UnknownVersion, match="never written"):
        store.activate("nope")
    assert store.get("user0", version="nope") is None


def test_versions_list_rows_and_live_flag(store: CandidateStore) -> None:
    store.write("v1", rows(4, "a"))
    store.write("v1", rows(6, "a")[4:])  # a second batch of the same version
    store.write("v2", rows(3, "b"))
    store.activate("v1")
    assert [(v.version, v.rows, v.live) for v in store.versions()] == [
        ("v1", 6, True),
        ("v2", 3, False),
    ]


def test_drop_removes_a_version_but_never_the_live_one(store: CandidateStore) -> None:
    store.write("v1", rows(3, "a"))
    store.write("v2", rows(3, "b"))
    store.activate("v2")
    with pytest.raises(RecsysError, match="live"):
        store.drop("v2")
    store.drop("v1")
    assert [v.version for v in store.versions()] == ["v2"]
    assert store.get("user0", version="v1") is None
    assert store.get("user0") is not None


def test_bulk_write_is_complete(store: CandidateStore) -> None:
    n = 5500  # more than one write batch in every implementation
    written = store.write("big", rows(n, "x"))
    store.activate("big")
    assert written == n
    for u in (0, 1999, 2000, 4999, 5000, n - 1):
        got = store.get(f"user{u}")
        assert got is not None and got.items == [f"x{u}-0", f"x{u}-1", f"x{u}-2"]
        assert got.sources == ["als", "als", "pop"]
        assert got.scores == pytest.approx([1.0, 0.5, 0.25])


def test_features_round_trip_exactly(store: CandidateStore) -> None:
    """The ranker's features travel with the lists, bit for bit (float32)."""
    import numpy as np

    features = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    with_features = Candidates("u-f", ["a", "b", "c"], [3.0, 2.0, 1.0], ["als"] * 3, features)
    without = Candidates("u-n", ["d"], [1.0], ["pop"])
    store.write("vf", [with_features, without])
    got = store.get("u-f", version="vf")
    assert got is not None and got == with_features and got.features is not None
    assert got.features.dtype == np.float32
    assert np.array_equal(got.features, features)
    plain = store.get("u-n", version="vf")
    assert plain is not None and plain.features is None


def test_features_must_match_the_items() -> None:
    import numpy as np

    with pytest.raises(ValueError, match="features"):
        Candidates("u", ["a", "b"], [1.0, 0.5], [], np.zeros((3, 4), dtype=np.float32))


def test_non_blocking_read_equals_get(store: CandidateStore) -> None:
    """``aget`` reads exactly what ``get`` reads: on the driver's IO thread where the store
    says ``reads_async`` (Cassandra, once the version's layout is known), elsewhere in a
    thread; a missing user, an unknown version and the live default included."""
    import asyncio

    import numpy as np

    features = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    written = [
        Candidates("u-a", ["a", "b", "c"], [3.0, 2.0, 1.0], ["als", "ease", "pop"], features),
        Candidates("u-b", ["d"], [1.0], ["pop"]),
    ]
    store.write("va", written)
    store.activate("va")

    async def read(user: str, version: str | None) -> Candidates | None:
        return await store.aget(user, version)

    for _ in range(2):  # the first read may learn the version's layout, the second not
        for user in ("u-a", "u-b", "nobody"):
            for version in ("va", None, "unknown"):
                got = asyncio.run(read(user, version))
                assert got == store.get(user, version), (user, version)
    got = asyncio.run(read("u-a", "va"))
    assert got == written[0] and got.features is not None
    assert np.array_equal(got.features, features)


def test_scan_reads_every_user_of_a_version_once(store: CandidateStore) -> None:
    """What the online tier fills its cache with: every row of one version, as ``get``
    reads it, across pages and partitions; ``limit`` stops it; other versions stay out."""
    import numpy as np

    n = 1234  # several pages in every implementation
    features = np.arange(6, dtype=np.float32).reshape(3, 2)
    written = [
        Candidates(c.user_id, c.items, c.scores, c.sources, features + u)
        for u, c in enumerate(rows(n, "s"))
    ]
    store.write("scanned", written)
    store.write("other", rows(7, "o"))
    scanned = list(store.scan("scanned"))
    assert sorted(c.user_id for c in scanned) == sorted(c.user_id for c in written)
    by_user = {c.user_id: c for c in written}
    for got in scanned[:: n // 50]:
        assert got == by_user[got.user_id] == store.get(got.user_id, "scanned")
        assert got.features is not None and by_user[got.user_id].features is not None
        assert np.array_equal(got.features, by_user[got.user_id].features)
    limited = [c.user_id for c in store.scan("scanned", limit=250)]
    assert len(limited) == len(set(limited)) == 250
    assert list(store.scan("scanned", limit=0)) == []
    assert [c.items[0] for c in store.scan("other")] != []
    assert all(c.items[0].startswith("o") for c in store.scan("other"))
    assert list(store.scan("never-written")) == []
