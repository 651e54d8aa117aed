"""Pinned facts about the public datasets: names, URLs, file checksums.

Standard library only, so that the CLI can show these in ``--help`` without importing
pandas (which takes seconds on small machines).
"""

from __future__ import annotations

from collections.abc import Mapping

MOVIELENS_100K = "movielens-100k"
SYNTHETIC = "synthetic"
DATASET_NAMES: tuple[str, ...] = (MOVIELENS_100K, SYNTHETIC)

MOVIELENS_100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
DOWNLOAD_HINT = (
    "get it with `recsys data download movielens-100k` "
    "or set RECSYS_MOVIELENS_DIR to a folder that holds it"
)

# Size and sha256 of each file GroupLens ships, pinned so that the downloader can prove
# what it fetched. README is not pinned: copies of it differ by a character or two.
MOVIELENS_100K_FILES: Mapping[str, tuple[int, str]] = {
    "u.data": (1979173, "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
    "u.item": (236344, "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"),
    "u.user": (22628, "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"),
    "u.genre": (202, "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb"),
    "u.occupation": (193, "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d"),
    "u.info": (36, "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b"),
}
