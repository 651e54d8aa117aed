"""Measure the candidate generators on MovieLens 100K under the MS Recommenders protocol.

Protocol: per-user random 75/25 split (seed 42), top 10, training items removed, every
test item relevant. Each generator's parameters are tuned on a validation split carved
from the training part (same protocol, another seed); the chosen parameters are refitted
on the whole training part and scored once on the test part.

Run (one thread: the machine is shared)::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        .venv/bin/python -m offline.experiments.ml100k_baselines \\
        --data "$RECSYS_MOVIELENS_DIR"
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from offline.generators.base import ScoringGenerator
from offline.metrics import RankingMetrics, ranking_metrics
from shared.settings import Settings

K = 10
# Published MS Recommenders MovieLens-100k table (examples/06_benchmarks), top-k rows.
MS_TABLE: dict[str, tuple[float, float, float, float]] = {
    "MS BiVAE": (0.146126, 0.475077, 0.411771, 0.219145),
    "MS BPR": (0.132478, 0.441997, 0.388229, 0.212522),
    "MS LightGCN": (0.088526, 0.419846, 0.379626, 0.144336),
    "MS NCF": (0.107720, 0.396118, 0.347296, 0.180775),
    "MS SAR": (0.110591, 0.382461, 0.330753, 0.176385),
    "MS FastAI": (0.025503, 0.147866, 0.130329, 0.053824),
    "MS SVD": (0.012873, 0.095930, 0.091198, 0.032783),
    "MS ALS (Spark)": (0.004732, 0.044239, 0.048462, 0.017796),
}

Factory = Callable[..., ScoringGenerator]


@dataclass(frozen=True)
class Data:
    fit: sp.csr_matrix  # training part minus validation
    valid: sp.csr_matrix
    train: sp.csr_matrix  # whole training part
    test: sp.csr_matrix


@dataclass(frozen=True)
class Result:
    name: str
    params: dict[str, Any]
    valid: RankingMetrics
    test: RankingMetrics
    seconds: float
    beyond: dict[str, float]  # beyond-accuracy metrics and per-slice nDCG on test


def load(directory: str) -> Data:
    from offline.generators.matrix import IdIndex
    from offline.split import benchmark_split, validation_split
    from shared.data.movielens import load_ratings

    ratings = load_ratings(directory)
    train, test = benchmark_split(ratings, ratio=0.75, seed=42)
    fit, valid = validation_split(train)
    index = IdIndex.from_frames(ratings)
    return Data(*(index.matrix(part) for part in (fit, valid, train, test)))


def evaluate(model: ScoringGenerator, truth: sp.csr_matrix) -> RankingMetrics:
    items, _ = model.recommend(np.arange(truth.shape[0]), K, exclude_seen=True)
    return ranking_metrics(items, truth, K)


def beyond_accuracy(model: ScoringGenerator, data: Data) -> dict[str, float]:
    """Coverage, novelty, popularity bias and nDCG per history slice, on the test part."""
    from offline.metrics import (
        catalogue_coverage,
        item_popularity,
        novelty,
        popularity_bias,
        slice_metrics,
    )

    items, _ = model.recommend(np.arange(data.test.shape[0]), K, exclude_seen=True)
    popularity = item_popularity(data.train)
    history = np.diff(data.train.indptr)
    out = {
        "coverage": catalogue_coverage(items, data.train.shape[1]),
        "novelty": novelty(items, popularity, data.train.shape[0]),
        "pop_pct": popularity_bias(items, popularity),
    }
    for name, m in slice_metrics(items, data.test, history, K).items():
        if name != "all":
            out[f"ndcg_{name}({m.users})"] = m.ndcg
    return out


def grid(space: dict[str, Sequence[Any]]) -> Iterable[dict[str, Any]]:
    keys = list(space)
    for values in itertools.product(*(space[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def tune(name: str, factory: Factory, space: dict[str, Sequence[Any]], data: Data) -> Result:
    """Best nDCG@10 on validation over ``space``; then refit on train and test once."""
    started = time.perf_counter()
    best: tuple[float, dict[str, Any], RankingMetrics] | None = None
    for params in grid(space):
        metrics = evaluate(factory(**params).fit(data.fit), data.valid)
        if best is None or metrics.ndcg > best[0]:
            best = (metrics.ndcg, params, metrics)
    assert best is not None
    _, params, valid = best
    model = factory(**params).fit(data.train)
    test = evaluate(model, data.test)
    seconds = time.perf_counter() - started
    return Result(name, params, valid, test, seconds, beyond_accuracy(model, data))


def tune_blend(results: dict[str, Result], factories: dict[str, Factory], data: Data) -> Result:
    """Weights (and fusion) of a blend of the tuned members, chosen on validation."""
    from offline.generators.blend import BlendGenerator

    started = time.perf_counter()
    names = list(factories)
    fitted = [factories[n](**results[n].params).fit(data.fit) for n in names]
    weight_grid = [0.0, 0.25, 0.5, 1.0, 2.0]
    best: tuple[float, dict[str, Any], RankingMetrics] | None = None
    for fusion in ("zscore", "rrf"):
        for rest in itertools.product(weight_grid, repeat=len(names) - 1):
            weights = (1.0, *rest)
            blend = BlendGenerator(fitted, weights, fusion=fusion).use_fitted(data.fit)
            metrics = evaluate(blend, data.valid)
            if best is None or metrics.ndcg > best[0]:
                best = (
                    metrics.ndcg,
                    {"fusion": fusion, "weights": dict(zip(names, weights, strict=True))},
                    metrics,
                )
    assert best is not None
    _, params, valid = best
    members = [factories[n](**results[n].params) for n in names]
    chosen = [params["weights"][n] for n in names]
    blend = BlendGenerator(members, chosen, fusion=params["fusion"]).fit(data.train)
    test = evaluate(blend, data.test)
    seconds = time.perf_counter() - started
    name = "blend(" + "+".join(names) + ")"
    return Result(name, params, valid, test, seconds, beyond_accuracy(blend, data))


def factories() -> dict[str, tuple[Factory, dict[str, Sequence[Any]]]]:
    from offline.generators.als import AlsGenerator
    from offline.generators.covisit import CovisitationGenerator
    from offline.generators.ease import EaseGenerator
    from offline.generators.popularity import PopularityGenerator

    return {
        "popularity": (PopularityGenerator, {}),
        "ease": (EaseGenerator, {"l2": [50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0]}),
        "covisit": (
            CovisitationGenerator,
            {
                "neighbours": [50, 100, 200, 400, 800, 2000],
                "asymmetry": [0.5, 0.7],
                "shrink": [0.0, 10.0],
            },
        ),
        "als": (
            AlsGenerator,
            {
                "factors": [16, 32, 64, 128],
                "regularization": [0.001, 0.01, 0.1, 1.0],
                "alpha": [1.0, 5.0, 20.0],
                "bm25": [None, (100.0, 0.8)],
                "iterations": [15],
                "device": ["auto"],
                "num_threads": [1],  # the machine is shared
            },
        ),
    }


def row(name: str, m: tuple[float, float, float, float]) -> str:
    return f"| {name} | {m[0]:.4f} | {m[1]:.4f} | {m[2]:.4f} | {m[3]:.4f} |"


def report(results: list[Result]) -> str:
    lines = ["| model | MAP | nDCG@10 | P@10 | R@10 |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        t = r.test
        lines.append(row(r.name + " (test)", (t.map, t.ndcg, t.precision, t.recall)))
    lines.extend(row(name, m) for name, m in MS_TABLE.items())
    lines.append("")
    lines.append("| model | valid nDCG@10 | tuned params | seconds | test beyond accuracy |")
    lines.append("| --- | --- | --- | --- | --- |")
    lines.extend(
        f"| {r.name} | {r.valid.ndcg:.4f} | {r.params} | {r.seconds:.1f} | "
        + ", ".join(f"{k} {v:.3f}" for k, v in r.beyond.items())
        + " |"
        for r in results
    )
    for r in results:
        t = r.test
        beats = all(
            ours > max(ms[i] for ms in MS_TABLE.values())
            for i, ours in enumerate((t.map, t.ndcg, t.precision, t.recall))
        )
        lines.append(f"{r.name}: nDCG@10 >= 0.48: {t.ndcg >= 0.48}; beats every MS row: {beats}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", help="MovieLens 100K folder (default: the movielens_dir setting)")
    parser.add_argument("--only", nargs="*", help="generator names to run (default: all)")
    parser.add_argument("--blend", nargs="*", default=["ease", "als", "covisit"])
    args = parser.parse_args(argv)
    data = load(args.data or str(Settings().movielens_dir))
    results: dict[str, Result] = {}
    specs = factories()
    for name, (factory, space) in specs.items():
        if args.only and name not in args.only:
            continue
        results[name] = tune(name, factory, space, data)
        print(
            f"{name}: valid nDCG {results[name].valid.ndcg:.4f} test {results[name].test}",
            flush=True,
        )
    members = [n for n in args.blend if n in results]
    ordered = list(results.values())
    if len(members) > 1:
        ordered.append(tune_blend(results, {n: specs[n][0] for n in members}, data))
    print(report(ordered))


if __name__ == "__main__":
    main()
