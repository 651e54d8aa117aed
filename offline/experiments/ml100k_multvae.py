"""Does a Mult-VAE (Liang et al. 2018) help the z-score blend on MovieLens 100K validation?

Only the training part of the benchmark split is read (per-user random 75/25, seed 42);
the test part is never built. The validation part is carved out of the training part by
the tune machinery (:func:`offline.tune.validation_data`: the job's validation protocol,
seed 4242), and every generator is fitted on the training part minus it.

What it reports, nDCG@10 on the validation users:

* each Mult-VAE configuration alone (the hidden and latent sizes, the KL weight's cap,
  the number of epochs: snapshots of one training run per configuration);
* the job's blend (EASE + 2 ALS + 0.5 co-visitation, z-scores, the defaults of
  :class:`offline.spec.ModelParams`) with and without the Mult-VAE;
* **cross-fitted** differences: the validation users are split in two halves; on each
  half, the Mult-VAE configuration and the blend weights (the Mult-VAE weight 0 among
  them) are chosen on the *other* half, so no user's figure comes from choices made on
  that user. The same grid without the Mult-VAE is cross-fitted the same way, so that the
  difference isolates what the Mult-VAE adds, not what re-weighting the others adds. Each
  difference is paired per user and given the project's 95 % percentile bootstrap
  interval over users (1,000 resamples, seed 42; :func:`offline.metrics
  .paired_bootstrap_interval`, as :mod:`offline.intervals` uses).

The best in-sample figures (choices made on all validation users) are printed too, marked
as optimistic: a grid chosen on the same users it is scored on always looks better.

Run (one torch thread: the machine is shared)::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 \\
        .venv/bin/python -m offline.experiments.ml100k_multvae --data "$RECSYS_MOVIELENS_DIR" \\
        --epochs 30 60 100 200 --shape 600x200 200x64 --seed 0

Measured on 2026-12-07 (943 validation users; about 95 s a run on the shared 2-core
machine). The result is negative: the Mult-VAE does not improve the blend on validation
with a paired interval above zero, so it is not a generator of the job.

* EASE alone 0.2609, ALS 0.2580, co-visitation 0.2310, the default blend 0.2693.
* The Mult-VAE alone peaks at 0.2456-0.2562 after 20 to 100 epochs (depending on the
  shape, the KL cap, the dropout and the seed; ``--alone`` scans), below EASE and ALS.
  The 600 x 200 shape then overfits (0.2127-0.2181 after 100 to 200 epochs), yet the
  blends chose mostly the snapshots after 100 to 200 epochs.
* Cross-fitted, with minus the default blend (three draws of the halves each): seed 0
  +0.0009 (-0.0029 to +0.0042), +0.0008 (-0.0022 to +0.0039), +0.0007 (-0.0021 to
  +0.0032); seed 1 +0.0002, -0.0008, -0.0012, every interval across zero.
* Cross-fitted, with minus the same grid without the Mult-VAE: seed 0 +0.0021, +0.0021,
  +0.0034 (+0.0013 to +0.0056); seed 1 +0.0014, +0.0004, +0.0015; 1 interval of 6 clear
  of zero. The grid without it loses to the default weights out of sample (0.2665-0.2681
  against 0.2693), which the default weights, chosen on these same users, do not show.
* Three seeds' logits averaged (``--runs 3 --epochs 60 100 200 --shape 600x200``, 163 s):
  with minus the default blend +0.0017 (-0.0017 to +0.0051), +0.0012 (-0.0018 to
  +0.0042), -0.0009 (-0.0041 to +0.0022); with minus without +0.0029 (-0.0004 to
  +0.0059), +0.0025 (-0.0000 to +0.0050), +0.0019 (-0.0009 to +0.0046).
* The best grid point chosen on all validation users (optimistic) is +0.0027 (-0.0009
  to +0.0063) over the default blend.
* A control: a Mult-VAE of 50 x 10 trained for 2 epochs (``--epochs 2 --shape 50x10``),
  close to noise, gets "with minus without" +0.0027 (-0.0001 to +0.0056) on the third
  draw of the halves (with minus the default blend -0.0001). A gain of that size over the
  re-weighted grid is therefore no evidence that the Mult-VAE learned something useful.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
from torch import nn

from offline.generators.base import ScoringGenerator, torch_threads
from offline.metrics import paired_bootstrap_interval, user_metrics
from shared.settings import Settings

K = 10
FloatMatrix = npt.NDArray[np.float32]


class _MultVae(nn.Module):
    """Encoder ``items -> hidden -> 2 x latent`` (tanh), decoder ``latent -> hidden ->
    items`` (tanh), L2-normalised input with dropout, as in Liang et al. 2018."""

    def __init__(self, n_items: int, hidden: int, latent: int, dropout: float) -> None:
        super().__init__()
        self.latent = latent
        self.drop = nn.Dropout(dropout)
        self.enc1 = nn.Linear(n_items, hidden)
        self.enc2 = nn.Linear(hidden, 2 * latent)
        self.dec1 = nn.Linear(latent, hidden)
        self.dec2 = nn.Linear(hidden, n_items)
        for layer in (self.enc1, self.enc2, self.dec1, self.dec2):
            nn.init.xavier_normal_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.drop(nn.functional.normalize(x, dim=1))
        h = torch.tanh(self.enc1(h))
        stats = self.enc2(h)
        mu, logvar = stats[:, : self.latent], stats[:, self.latent :]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.dec2(torch.tanh(self.dec1(z))), mu, logvar


class MultVaeGenerator(ScoringGenerator):
    """Mult-VAE: a user's multinomial over items decoded from a latent code of their
    history; score = the decoder's logits for the user's whole (fitting) history.

    The KL weight rises linearly from 0 to ``beta`` over the first ``anneal`` share of the
    training steps and stays there. ``snapshots`` keeps the scores of every user after
    those epochs too (for the experiment's grid over epochs), ``scores_at``.
    """

    name = "multvae"

    def __init__(
        self,
        *,
        hidden: int = 600,
        latent: int = 200,
        dropout: float = 0.5,
        beta: float = 0.2,
        anneal: float = 0.8,
        epochs: int = 200,
        lr: float = 1e-3,
        batch_size: int = 128,
        seed: int = 0,
        threads: int | None = 1,
        snapshots: Sequence[int] = (),
    ) -> None:
        self.hidden = hidden
        self.latent = latent
        self.dropout = dropout
        self.beta = beta
        self.anneal = anneal
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.threads = threads
        self.snapshots = tuple(sorted(set(snapshots) | {epochs}))
        self._scores: dict[int, FloatMatrix] = {}

    def fit(self, interactions: sp.csr_matrix) -> Self:
        train = self._remember(interactions)
        dense = torch.from_numpy((train.toarray() > 0).astype(np.float32))
        n_items = dense.shape[1]
        active = np.nonzero(np.diff(train.indptr) > 0)[0]
        rng = np.random.default_rng(self.seed)
        with torch_threads(self.threads):
            torch.manual_seed(self.seed)
            net = _MultVae(n_items, self.hidden, self.latent, self.dropout)
            optimiser = torch.optim.Adam(net.parameters(), lr=self.lr)
            steps_per_epoch = -(-len(active) // self.batch_size)
            anneal_steps = max(1.0, self.anneal * self.epochs * steps_per_epoch)
            step = 0
            for epoch in range(1, self.epochs + 1):
                net.train()
                order = rng.permutation(active)
                for start in range(0, len(order), self.batch_size):
                    x = dense[torch.from_numpy(order[start : start + self.batch_size])]
                    logits, mu, logvar = net(x)
                    nll = -(nn.functional.log_softmax(logits, dim=1) * x).sum(dim=1).mean()
                    kl = (-0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(dim=1)).mean()
                    weight = self.beta * min(1.0, step / anneal_steps)
                    loss = nll + weight * kl
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    step += 1
                if epoch in self.snapshots:
                    net.eval()
                    with torch.no_grad():
                        self._scores[epoch] = net(dense)[0].numpy().astype(np.float32)
        return self

    def scores_at(self, epoch: int) -> FloatMatrix:
        return self._scores[epoch]

    def score(self, user_indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        if self.epochs not in self._scores:
            raise RuntimeError("multvae: call fit() first")
        return self._scores[self.epochs][user_indices]


class _Fixed(ScoringGenerator):
    """Scores given as a dense ``[users, items]`` matrix (a snapshot, or a blend of
    z-scores), recommended with the shared masking of seen and unknown items."""

    name = "fixed"

    def __init__(self, scores: npt.NDArray[np.floating[Any]], train: sp.csr_matrix) -> None:
        self._dense = scores
        self._remember(train)

    def fit(self, interactions: sp.csr_matrix) -> Self:
        return self

    def score(self, user_indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray(self._dense[user_indices], dtype=np.float32)


@dataclass(frozen=True)
class Valid:
    fit: sp.csr_matrix
    truth: sp.csr_matrix  # validation items of ``users`` (row i = users[i])
    users: npt.NDArray[np.int64]


def load(directory: str) -> Valid:
    """The training part of the benchmark split, and its validation part (tune's)."""
    from offline.split import benchmark_split
    from offline.tune import validation_data
    from shared.data.movielens import load_ratings

    ratings = load_ratings(directory)
    train, _ = benchmark_split(ratings, ratio=0.75, seed=42)  # the test part is dropped unread
    data = validation_data(train, "movielens-100k")
    return Valid(data.fit, data.truth, data.users)


def per_user_ndcg(scores: npt.NDArray[np.floating[Any]], data: Valid) -> npt.NDArray[np.float64]:
    items, _ = _Fixed(scores, data.fit).recommend(data.users, K, exclude_seen=True)
    return user_metrics(items, data.truth, K)["ndcg"]


def zscores(model: ScoringGenerator, fit: sp.csr_matrix) -> npt.NDArray[np.float64]:
    """The member's z-scores exactly as the blend computes them (all users)."""
    from offline.generators.blend import BlendGenerator

    users = np.arange(fit.shape[0], dtype=np.int64)
    blend = BlendGenerator([model], [1.0]).use_fitted(fit)
    return np.asarray(blend.score(users), dtype=np.float64)


def vae_grid(args: Any) -> Iterator[dict[str, Any]]:
    """Every ``--shape`` (``hidden x latent``) with every ``--beta`` and ``--dropout``."""
    for shape, beta, dropout in itertools.product(args.shape, args.beta, args.dropout):
        hidden, latent = (int(v) for v in shape.split("x"))
        yield {"hidden": hidden, "latent": latent, "beta": beta, "dropout": dropout}


def interval(diff: npt.NDArray[np.float64]) -> str:
    low, high = paired_bootstrap_interval(diff, np.zeros_like(diff))
    return f"{diff.mean():+.4f} ({low:+.4f} to {high:+.4f})"


def cross_fit(
    table: dict[Any, npt.NDArray[np.float64]], halves: list[npt.NDArray[np.int64]]
) -> tuple[npt.NDArray[np.float64], list[Any]]:
    """Per-user nDCG when each half gets the grid point that is best on the other half."""
    out = np.zeros(len(next(iter(table.values()))), dtype=np.float64)
    chosen = []
    for i, half in enumerate(halves):
        other = halves[1 - i]
        best = max(table, key=lambda key: float(table[key][other].mean()))
        out[half] = table[best][half]
        chosen.append(best)
    return out, chosen


Table = dict[Any, npt.NDArray[np.float64]]  # grid point -> per-user nDCG@10


def fit_base(data: Valid) -> tuple[dict[str, npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    """The job's members fitted on the fitting part: their z-scores, and those of the
    job's default blend (``"blend"``); and the default blend's per-user nDCG@10."""
    from offline.job import make_members
    from offline.spec import ModelParams

    params = ModelParams()
    members, _ = make_members(Settings(device="cpu"), params, data.fit.shape[1])
    z: dict[str, npt.NDArray[np.float64]] = {}
    for member in members:
        if hasattr(member, "num_threads"):
            member.num_threads = 1  # the machine is shared
        member.fit(data.fit)
        z[member.name] = zscores(member, data.fit)
        print(f"{member.name} alone: {per_user_ndcg(z[member.name], data).mean():.4f}", flush=True)
    default = dict(params.blend_weights)
    base = sum((default[name] * z[name] for name in default), np.zeros_like(z["ease"]))
    base_ndcg = per_user_ndcg(base, data)
    print(f"blend {default}: {base_ndcg.mean():.4f}", flush=True)
    return z | {"blend": base}, base_ndcg


def fit_vaes(
    data: Valid, base: npt.NDArray[np.float64], base_ndcg: npt.NDArray[np.float64], args: Any
) -> dict[tuple[Any, ...], npt.NDArray[np.float64]]:
    """Each Mult-VAE configuration's z-scores after each epoch of ``args.epochs``."""
    vae_z: dict[tuple[Any, ...], npt.NDArray[np.float64]] = {}
    for config in vae_grid(args):
        t0 = time.perf_counter()
        # One run per seed; with several, each epoch's scores are the runs' mean logits.
        runs = [
            MultVaeGenerator(
                **config, epochs=max(args.epochs), snapshots=args.epochs, seed=args.seed + i
            ).fit(data.fit)
            for i in range(args.runs)
        ]
        for epoch in args.epochs:
            key = (*config.values(), epoch)
            mean = np.mean([vae.scores_at(epoch) for vae in runs], axis=0)
            vae_z[key] = zscores(_Fixed(mean, data.fit), data.fit)
            alone = per_user_ndcg(vae_z[key], data).mean()
            plus = per_user_ndcg(base + vae_z[key], data)
            print(
                f"multvae {config} epoch {epoch}: alone {alone:.4f}; blend + 1 x multvae "
                f"{plus.mean():.4f}, minus blend {interval(plus - base_ndcg)} (in-sample)",
                flush=True,
            )
        print(f"  fitted in {time.perf_counter() - t0:.0f} s", flush=True)
    return vae_z


def grids(
    data: Valid,
    z: dict[str, npt.NDArray[np.float64]],
    vae_z: dict[tuple[Any, ...], npt.NDArray[np.float64]],
) -> tuple[Table, Table]:
    """Blend weights around the defaults (EASE 1), without and with the Mult-VAE."""
    als_w, covisit_w, vae_w = [1.0, 2.0, 3.0], [0.25, 0.5, 1.0], [0.25, 0.5, 1.0, 2.0]
    without: Table = {}
    for a, c in itertools.product(als_w, covisit_w):
        without[(a, c)] = per_user_ndcg(z["ease"] + a * z["als"] + c * z["covisit"], data)
    with_vae: Table = dict(without)  # the Mult-VAE's weight 0 is a choice too
    for key, (a, c), v in itertools.product(vae_z, without, vae_w):
        blend = z["ease"] + a * z["als"] + c * z["covisit"] + v * vae_z[key]
        with_vae[(a, c, v, key)] = per_user_ndcg(blend, data)
    print(f"grid: {len(without)} blends without, {len(with_vae)} with the Mult-VAE")
    return without, with_vae


def compare(without: Table, with_vae: Table, base_ndcg: npt.NDArray[np.float64]) -> None:
    best_in = max(with_vae, key=lambda k: float(with_vae[k].mean()))
    print(
        f"in-sample best with: {best_in} {with_vae[best_in].mean():.4f}, minus the default "
        f"blend {interval(with_vae[best_in] - base_ndcg)} (optimistic)"
    )
    for split_seed in range(3):
        order = np.random.default_rng(split_seed).permutation(len(base_ndcg))
        halves = [np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])]
        crossed_with, chosen_with = cross_fit(with_vae, halves)
        crossed_without, chosen_without = cross_fit(without, halves)
        print(f"halves drawn with seed {split_seed}:")
        print(f"  chosen with the Mult-VAE: {chosen_with}; without: {chosen_without}")
        print(
            f"  cross-fitted nDCG@10: with {crossed_with.mean():.4f}, without "
            f"{crossed_without.mean():.4f}, the default blend {base_ndcg.mean():.4f}"
        )
        print(f"  with minus without, paired: {interval(crossed_with - crossed_without)}")
        print(f"  with minus the default blend, paired: {interval(crossed_with - base_ndcg)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", help="MovieLens 100K folder (default: the movielens_dir setting)")
    parser.add_argument("--epochs", type=int, nargs="*", default=[50, 100, 200])
    parser.add_argument("--seed", type=int, default=0, help="the Mult-VAE's seed")
    parser.add_argument(
        "--runs", type=int, default=1, help="Mult-VAE runs (seeds seed, seed+1, ...) averaged"
    )
    parser.add_argument("--shape", nargs="*", default=["600x200"], help="hidden x latent")
    parser.add_argument("--beta", type=float, nargs="*", default=[0.2], help="the KL cap")
    parser.add_argument("--dropout", type=float, nargs="*", default=[0.5])
    parser.add_argument("--alone", action="store_true", help="each Mult-VAE alone, no blends")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = load(args.data or str(Settings().movielens_dir))
    print(f"validation users {len(data.users)}, fit rows {data.fit.nnz:,}", flush=True)
    z, base_ndcg = fit_base(data)
    vae_z = fit_vaes(data, z["blend"], base_ndcg, args)
    if args.alone:
        return
    without, with_vae = grids(data, z, vae_z)
    compare(without, with_vae, base_ndcg)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
