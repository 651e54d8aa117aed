"""Time the served ranker's forward pass per candidate: the layouts before and after the
ranker's extra features, and the one-linear-layer ranker a bundle serves when the blend or
a generator alone wins the comparison (:func:`shared.ranker.Ranker.prior_only`).

Random weights and features: the cost of a forward pass does not depend on their values.
One torch thread, as the API runs it. Not the online benchmark: merge, features and the
rest of the request are left out.

Run::

    .venv/bin/python -m offline.experiments.ranker_cost --candidates 200
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch

from shared.ranker import FeatureSpec, Ranker, feature_names

MEMBERS = ("ease", "als", "covisit")
EXTRAS = ("item_log_age", "item_trend", "covisit_recent", "genre_affinity")
BLEND = {"ease_z": 1.0, "als_z": 2.0, "covisit_z": 0.5}


def rankers() -> dict[str, Ranker]:
    rng = np.random.default_rng(0)

    def spec(names: tuple[str, ...]) -> FeatureSpec:
        features = rng.standard_normal((1_000, len(names))).astype(np.float32)
        return FeatureSpec.fit(names, features, (64, 32), 50, BLEND)

    before, now = feature_names(MEMBERS), feature_names(MEMBERS, EXTRAS)
    return {
        f"before: {len(before)} features, MLP 64-32": Ranker.new(spec(before), "cpu"),
        f"trained now: {len(now)} features, MLP 64-32": Ranker.new(spec(now), "cpu"),
        f"served blend: {len(now)} features, one linear layer": Ranker.prior_only(
            spec(now), BLEND, "blend", "cpu"
        ),
    }


def time_all(
    models: dict[str, Ranker], candidates: int, calls: int, repeats: int
) -> dict[str, list[float]]:
    """Seconds per call, ``repeats`` runs of ``calls`` calls for each ranker, the rankers
    taking turns within each run (on a shared machine the load moves between runs)."""
    inputs = {}
    for name, ranker in models.items():
        shape = (candidates, len(ranker.spec.names))
        inputs[name] = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        for _ in range(calls // 10):  # warm-up
            ranker.score(inputs[name])
    out: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, ranker in models.items():
            x = inputs[name]
            started = time.perf_counter()
            for _ in range(calls):
                ranker.score(x)
            out[name].append((time.perf_counter() - started) / calls)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name, runs in time_all(rankers(), args.candidates, args.calls, args.repeats).items():
        median = float(np.median(runs))
        print(
            f"{name}: {median * 1e6:.1f} us for {args.candidates} candidates, "
            f"{median * 1e9 / args.candidates:.0f} ns a candidate "
            f"(runs {min(runs) * 1e6:.1f}-{max(runs) * 1e6:.1f} us)"
        )


if __name__ == "__main__":
    main()
