"""``recsys bench``: benchmarks per tier, each writing a timestamped results folder."""
