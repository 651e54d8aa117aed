"""The data layer: loaders, a downloader and a generator that all yield one frame shape.

Every source of interactions ends as the canonical frame of :mod:`shared.data.frame`:
columns ``user_id`` (str), ``item_id`` (str), ``rating`` (float32; 1.0 for implicit
data) and ``timestamp`` (int64 seconds since the epoch). Ids stay strings at every
boundary; tiers map them to dense ints internally.

Modules (import the one you need; this package imports nothing heavy on its own):

* :mod:`shared.data.frame` - the convention, ``interactions_frame``, ``validate_interactions``
* :mod:`shared.data.movielens` - ``load_ratings``, ``load_items``, ``load_users`` for ml-100k
* :mod:`shared.data.download` - ``download_movielens_100k`` with pinned sha256 checksums
* :mod:`shared.data.interactions` - ``load_interactions`` for CSV / Parquet with a column map
* :mod:`shared.data.synthetic` / :mod:`shared.data.synthetic_io` - ``generate``, ``write_synthetic``
* :mod:`shared.data.catalog` - ``load_dataset`` by name or path; :mod:`shared.data.stats`
* :mod:`shared.data.sources` - dataset names, URLs and pinned checksums (stdlib only)
"""
