"""Analysis helpers behind the notebooks in ``notebooks/``: plain functions on frames and arrays.

* :mod:`offline.analysis.bundles` - a registry bundle's stored lists scored again at any k:
  metric curves, user slices, long-tail coverage, popularity bias, novelty, diversity;
* :mod:`offline.analysis.dataset` - activity over time, popularity and user activity
  distributions, sparsity of an interactions frame;
* :mod:`offline.analysis.experiments` - logged events read back, simulated engagement of an
  offline replay, per-arm rates with confidence intervals.

The metrics themselves are :mod:`offline.metrics` and :mod:`offline.report`; nothing here
recomputes them differently. The notebooks only call these and plot.
"""
