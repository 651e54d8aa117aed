"""The candidate ranker: one torch model class, its feature specification and its files.

Training (offline) and serving (online) both import this module, so the features are
assembled by the same function and the weights are read by the same class. A ranker is
saved as a folder holding ``ranker.pt`` (the state dict) and ``ranker.json`` (the
:class:`FeatureSpec`: ordered feature names, normalisation statistics, layer sizes).

Per-candidate features, for every candidate generator ``g`` (see :func:`feature_names`):

* ``g_z``: g's score of the item, standardised over the items g could recommend to the
  user (so different generators' scales are comparable, as in the offline blend);
* ``g_logrank``: ``log1p`` of the item's 0-based rank in g's top ``top_n`` list for the
  user, ``top_n`` when the item is not in that list (what a reader of stored lists knows);
* ``g_in_top``: 1 when that rank is inside the ``top_n`` the candidates were drawn from;

then ``item_log_pop`` (``log1p`` of the item's interaction count) and
``user_log_history`` (``log1p`` of the user's history length); then, for rankers trained
since these existed (a spec lists the ones it was trained on, and older specs none), extra
features in the order the spec names them:

* ``item_log_age``: ``log1p`` of the days from the item's first interaction to the end of
  the training data; ``item_trend``: ``log1p`` of its interactions in the last
  ``TREND_WINDOW_S`` of the training data minus ``log1p`` of all of them (both per item,
  :func:`item_time_features`; the bundle's catalogue stores them, so the online tier has
  them for any item);
* ``covisit_recent``: the item's co-visitation (cosine over user sets) with the user's
  ``RECENT_ITEMS`` most recent training items, summed; ``genre_affinity``: the mean share
  of the user's training history in each of the item's genres, when items have genres.
  Both need the user's training history: the stored candidate rows carry them, and an
  item no generator proposed reads 0, as it reads "not in the list" for every generator.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from shared.device import resolve_torch_device

FloatArray = npt.NDArray[np.float32]
WEIGHTS_FILE = "ranker.pt"
SPEC_FILE = "ranker.json"
_PER_MEMBER = ("z", "logrank", "in_top")
_GLOBAL = ("item_log_pop", "user_log_history")
# Extra features (see the module docstring): per item, and per user and item.
ITEM_FEATURES = ("item_log_age", "item_trend")
PAIR_FEATURES = ("covisit_recent", "genre_affinity")
TREND_WINDOW_S = 28 * 86_400
RECENT_ITEMS = 5
_DAY_S = 86_400.0


def feature_names(members: Sequence[str], extras: Sequence[str] = ()) -> tuple[str, ...]:
    """Ordered feature names for candidates drawn from generators named ``members``, with
    the ``extras`` (of :data:`ITEM_FEATURES` and :data:`PAIR_FEATURES`) after them."""
    unknown = set(extras) - {*ITEM_FEATURES, *PAIR_FEATURES}
    if unknown:
        raise ValueError(f"unknown extra features: {sorted(unknown)}")
    names = [f"{m}_{suffix}" for m in members for suffix in _PER_MEMBER]
    return (*names, *_GLOBAL, *extras)


def extra_names(names: Sequence[str]) -> tuple[str, ...]:
    """The extra features of a spec's ``names``, in order (none for older rankers)."""
    return tuple(n for n in names if n in ITEM_FEATURES or n in PAIR_FEATURES)


def item_time_features(
    items: npt.NDArray[np.integer[Any]],
    timestamps: npt.NDArray[np.integer[Any]],
    n_items: int,
    window_s: int = TREND_WINDOW_S,
) -> dict[str, FloatArray]:
    """``item_log_age`` and ``item_trend`` of each of ``n_items`` items (``[n_items]``
    float32) from interaction rows (item index, unix seconds); the data's newest timestamp
    is "now", so the same data gives the same values. Items without rows read 0."""
    items = np.asarray(items, dtype=np.int64)
    seconds = np.asarray(timestamps, dtype=np.int64)
    if len(items) == 0:
        zeros = np.zeros(n_items, dtype=np.float32)
        return {"item_log_age": zeros, "item_trend": zeros.copy()}
    now = int(seconds.max())
    first = np.full(n_items, now, dtype=np.int64)
    np.minimum.at(first, items, seconds)
    count = np.bincount(items, minlength=n_items).astype(np.float64)
    recent = np.bincount(items[seconds >= now - window_s], minlength=n_items).astype(np.float64)
    age = np.log1p((now - first).astype(np.float64) / _DAY_S)
    trend = np.log1p(recent) - np.log1p(count)
    return {"item_log_age": age.astype(np.float32), "item_trend": trend.astype(np.float32)}


def assemble_features(
    members: Sequence[str],
    *,
    z: Mapping[str, npt.NDArray[np.floating[Any]]],
    rank: Mapping[str, npt.NDArray[np.integer[Any]]],
    item_popularity: npt.NDArray[np.integer[Any]],
    history: npt.NDArray[np.integer[Any]],
    top_n: int,
    extras: Mapping[str, npt.NDArray[np.floating[Any]]] | None = None,
) -> FloatArray:
    """``[users, candidates, features]`` in :func:`feature_names` order.

    ``z[g]``, ``rank[g]``, ``item_popularity`` and each of ``extras`` (in its order) are
    ``[users, candidates]``; ``history`` is ``[users]``. Raw signals in, model inputs out:
    the one feature path.
    """
    shape = item_popularity.shape
    columns: list[npt.NDArray[np.floating[Any]]] = []
    for m in members:
        r = rank[m].astype(np.float64)
        columns.append(z[m].astype(np.float64))
        columns.append(np.log1p(r))
        columns.append((r < top_n).astype(np.float64))
    columns.append(np.log1p(item_popularity.astype(np.float64)))
    columns.append(np.broadcast_to(np.log1p(history.astype(np.float64))[:, None], shape))
    for values in (extras or {}).values():
        columns.append(np.broadcast_to(np.asarray(values, dtype=np.float64), shape))
    return np.stack(columns, axis=-1).astype(np.float32)


@dataclass(frozen=True)
class FeatureSpec:
    """What the weights expect: feature order, input normalisation, layer sizes."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hidden: tuple[int, ...] = (64, 32)
    top_n: int = 50  # candidates per generator the ranker was trained on
    # Fixed weights on the raw features added to the network's output: the score the
    # model starts from (e.g. the offline blend, a weighted sum of the members' z-scores).
    # The network's last layer starts at zero, so an untrained ranker ranks like the prior
    # and training only moves away from it where the labels say so. Empty: no prior.
    prior: tuple[float, ...] = ()
    # What the bundle serves with these weights, chosen by the offline job on validation
    # users: "ranker" (the trained net), "blend" (the prior alone: the z-score blend) or a
    # generator's name (the prior is that generator's z-score alone). Older specs: ranker.
    serves: str = "ranker"

    @classmethod
    def fit(
        cls,
        names: Sequence[str],
        features: FloatArray,
        hidden: Sequence[int],
        top_n: int,
        prior: Mapping[str, float] | None = None,
    ) -> Self:
        """Normalisation statistics from training features ``[n, f]``."""
        if features.ndim != 2 or features.shape[1] != len(names):
            raise ValueError(f"features must be [n, {len(names)}], got {features.shape}")
        mean = features.astype(np.float64).mean(axis=0)
        std = features.astype(np.float64).std(axis=0)
        std = np.where(std > 1e-8, std, 1.0)  # constant features stay as they are
        unknown = set(prior or {}) - set(names)
        if unknown:
            raise ValueError(f"prior weights for unknown features: {sorted(unknown)}")
        weights = tuple(float((prior or {}).get(n, 0.0)) for n in names) if prior else ()
        return cls(
            tuple(names),
            tuple(float(v) for v in mean),
            tuple(float(v) for v in std),
            tuple(int(h) for h in hidden),
            top_n,
            weights,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Self:
        raw = json.loads(text)
        return cls(
            names=tuple(raw["names"]),
            mean=tuple(float(v) for v in raw["mean"]),
            std=tuple(float(v) for v in raw["std"]),
            hidden=tuple(int(h) for h in raw["hidden"]),
            top_n=int(raw["top_n"]),
            prior=tuple(float(v) for v in raw.get("prior", ())),
            serves=str(raw.get("serves", "ranker")),
        )


class RankerNet(nn.Module):
    """An MLP scoring one candidate from its features; normalisation is part of the net,
    so a saved model cannot be fed raw features with the wrong statistics."""

    mean: torch.Tensor
    std: torch.Tensor
    prior: torch.Tensor

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32))
        layers: list[nn.Module] = []
        width = len(spec.names)
        for size in spec.hidden:
            layers.extend([nn.Linear(width, size), nn.ReLU()])
            width = size
        last = nn.Linear(width, 1)
        layers.append(last)
        self.mlp = nn.Sequential(*layers)
        prior = spec.prior or (0.0,) * len(spec.names)
        self.register_buffer("prior", torch.tensor(prior, dtype=torch.float32))
        if spec.prior:
            # Start exactly at the prior; see FeatureSpec.prior.
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[n, f]`` raw features -> ``[n]`` logits (higher = more likely relevant)."""
        x = (features - self.mean) / self.std
        out: torch.Tensor = self.mlp(x).squeeze(-1) + features @ self.prior
        return out


class Ranker:
    """A :class:`RankerNet` resident on one device, with its spec; scores numpy batches."""

    def __init__(self, spec: FeatureSpec, net: RankerNet, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self.net = net.to(device).eval()
        # The net's own tensors (trained in place, so always current), for scoring without
        # nn.Module's call machinery: a third less CPU per request batch, the same numbers.
        self._linear = [(m.weight, m.bias) for m in self.net.mlp if isinstance(m, nn.Linear)]
        self._frozen: Callable[[FloatArray], FloatArray] | None = None  # see freeze()

    @classmethod
    def prior_only(
        cls, spec: FeatureSpec, weights: Mapping[str, float], serves: str, device: str = "auto"
    ) -> Self:
        """A ranker that scores exactly ``features @ weights`` (by feature name): no hidden
        layer, its one linear layer at zero. How a bundle serves the blend, or one
        generator alone, through the same feature rows and the same online path."""
        unknown = set(weights) - set(spec.names)
        if unknown:
            raise ValueError(f"weights for unknown features: {sorted(unknown)}")
        prior = tuple(float(weights.get(n, 0.0)) for n in spec.names)
        fixed = replace(spec, hidden=(), prior=prior, serves=serves)
        return cls(fixed, RankerNet(fixed), resolve_torch_device(device))

    @classmethod
    def new(cls, spec: FeatureSpec, device: str = "auto", seed: int = 0) -> Self:
        """Freshly initialised weights (seeded) for training."""
        torch.manual_seed(seed)
        return cls(spec, RankerNet(spec), resolve_torch_device(device))

    def freeze(self) -> Self:
        """The weights stay as they are from now on (a served bundle's ranker, never
        trained again). On the CPU the net is then scored in numpy from a copy of its
        weights: torch's call costs tens of microseconds per batch of a few hundred rows
        whatever the layers' sizes (the tensor from numpy, ``inference_mode``, one kernel
        launch per op, the copy back), and more when the process has idled between
        requests. A net without hidden layers (how a bundle serves the blend or one
        generator) becomes one affine map, ``features @ w + c``; a net with hidden layers
        runs its layers as matrix products. The same numbers, float32 rounding aside. On
        a GPU torch scores as before."""
        if self.device.type != "cpu":
            return self
        net = self.net
        with torch.no_grad():
            if not self.spec.hidden:
                weight, bias = self._linear[0]
                row = weight[0].double() / net.std.double()
                w = (row + net.prior.double()).numpy().astype(np.float32)
                c = np.float32(bias.double()[0] - (net.mean.double() * row).sum())
                self._frozen = partial(_affine, w=w, c=c)
                return self
            layers = tuple(
                (
                    np.ascontiguousarray(weight.numpy().T, dtype=np.float32),
                    bias.numpy().astype(np.float32),
                )
                for weight, bias in self._linear
            )
            self._frozen = partial(
                _mlp,
                mean=net.mean.numpy().astype(np.float32),
                std=net.std.numpy().astype(np.float32),
                layers=layers,
                prior=net.prior.numpy().astype(np.float32),
            )
        return self

    def score(self, features: FloatArray) -> FloatArray:
        """``[n, f]`` float32 features -> ``[n]`` float32 scores, in one batch."""
        if features.ndim != 2 or features.shape[1] != len(self.spec.names):
            raise ValueError(f"features must be [n, {len(self.spec.names)}], got {features.shape}")
        if self._frozen is not None:
            return self._frozen(np.asarray(features, dtype=np.float32))
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            out = self._forward(x.to(self.device))
            return np.asarray(out.float().cpu().numpy(), dtype=np.float32)

    def _forward(self, features: torch.Tensor) -> torch.Tensor:
        """:meth:`RankerNet.forward`, op for op, on the net's tensors."""
        net = self.net
        x = (features - net.mean) / net.std
        last = len(self._linear) - 1
        for j, (weight, bias) in enumerate(self._linear):
            x = nn.functional.linear(x, weight, bias)
            if j < last:
                x = torch.relu(x)
        out: torch.Tensor = x.squeeze(-1) + features @ net.prior
        return out

    def save(self, path: str | Path) -> Path:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SPEC_FILE).write_text(self.spec.to_json(), encoding="utf-8")
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        torch.save(state, folder / WEIGHTS_FILE)
        return folder

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Self:
        folder = Path(path)
        spec = FeatureSpec.from_json((folder / SPEC_FILE).read_text(encoding="utf-8"))
        target = resolve_torch_device(device)
        # weights_only: a bundle is data, never code to execute.
        state = torch.load(folder / WEIGHTS_FILE, map_location=target, weights_only=True)
        net = RankerNet(spec)
        net.load_state_dict(state)
        return cls(spec, net, target)


def _affine(features: FloatArray, *, w: FloatArray, c: np.float32) -> FloatArray:
    """A frozen net without hidden layers: ``features @ w + c``."""
    out: FloatArray = features @ w
    out += c
    return out


def _mlp(
    features: FloatArray,
    *,
    mean: FloatArray,
    std: FloatArray,
    layers: tuple[tuple[FloatArray, FloatArray], ...],
    prior: FloatArray,
) -> FloatArray:
    """A frozen net's :meth:`RankerNet.forward` in numpy, layer for layer."""
    x = (features - mean) / std
    last = len(layers) - 1
    for j, (weight, bias) in enumerate(layers):
        x = x @ weight
        x += bias
        if j < last:
            np.maximum(x, 0.0, out=x)
    out: FloatArray = x[:, 0] + features @ prior
    return out
