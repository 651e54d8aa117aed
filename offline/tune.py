"""Tune the generators' parameters and the blend weights on the user's own data (Optuna).

The search never sees the test part. It carves a validation part out of the training part
with the benchmark's per-user protocol (:func:`offline.split.validation_mask`), fits the
generators on the rest, and maximises nDCG@k of their blend on the validation part. Each
trial fits the members one by one and reports the best member's nDCG so far, so that the
median pruner stops a trial whose generators are already worse than most (Optuna's TPE
sampler, seeded, picks the next parameters).

The study lives in an SQLite file under ``RECSYS_HOME/tune/``, named after the training
data's fingerprint unless ``study`` is given: running the search again on the same data
resumes it, adding trials to what was learned. The best parameters go to a JSON file that
``recsys offline run --params FILE`` reads (:mod:`offline.params_file`); the bundle records
them and where they came from.

On data with many users the validation part is scored on a sample of ``max_users`` users,
so that a trial's cost stops growing with the user count.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from offline.generators.matrix import IdIndex
from offline.metrics import ranking_metrics
from offline.spec import JobSpec, ModelParams
from offline.split import validation_mask
from shared.errors import DataError
from shared.settings import Settings

if TYPE_CHECKING:
    import optuna

    from offline.generators.base import ScoringGenerator

MIN_VALID_USERS = 20
TrialCallback = Callable[["TrialLine"], None]


@dataclass(frozen=True)
class TrialLine:
    """One finished trial, for a progress line."""

    number: int
    state: str  # "complete", "pruned" or "failed"
    value: float | None  # the blend's validation nDCG@k
    best: float | None
    best_number: int | None
    seconds: float


@dataclass(frozen=True)
class ValidationData:
    """The training part split for tuning, in dense ids."""

    fit: sp.csr_matrix  # the training part minus the validation part
    truth: sp.csr_matrix  # [users, items]: validation items of the evaluated users
    users: npt.NDArray[np.int64]  # rows of ``fit`` that are evaluated
    n_items: int
    sampled_from: int  # users with a validation part, before sampling


@dataclass(frozen=True)
class TuneResult:
    params: ModelParams
    study: str
    trials: int  # trials in the study, all calls together
    complete: int
    value: float  # the best trial's validation nDCG@k
    k: int
    members: dict[str, float]  # each generator's validation nDCG@k in the best trial
    valid_users: int


def validation_data(
    train: pd.DataFrame, label: str, max_users: int = 5_000, seed: int = 0
) -> ValidationData:
    """Carve the validation part out of ``train``; too little data raises a DataError."""
    index, user_codes, item_codes = IdIndex.factorize(train)
    in_fit = validation_mask(user_codes)
    fit = index.matrix_of_codes(user_codes[in_fit], item_codes[in_fit])
    valid = index.matrix_of_codes(user_codes[~in_fit], item_codes[~in_fit])
    seen = valid.multiply(fit > 0)  # an item in both parts is a training item, not a target
    valid = (valid - seen).tocsr()
    valid.eliminate_zeros()
    has_both = (np.diff(valid.indptr) > 0) & (np.diff(fit.indptr) > 0)
    users = np.nonzero(has_both)[0].astype(np.int64)
    if len(users) < MIN_VALID_USERS:
        raise DataError(
            f"{label}: too little data to tune: {len(users)} users have both a fitting and a "
            f"validation part, at least {MIN_VALID_USERS} needed (users with 2 or more "
            f"distinct items; the training part has {len(train):,} rows)"
        )
    found = len(users)
    if found > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return ValidationData(fit, valid[users], users, len(index.items), found)


def ndcg(model: ScoringGenerator, data: ValidationData, k: int) -> float:
    items, _ = model.recommend(data.users, k, exclude_seen=True)
    return ranking_metrics(items, data.truth, k).ndcg


def suggest(trial: optuna.Trial, base: ModelParams, n_items: int) -> ModelParams:
    """The trial's parameters: the generators the job would build for ``n_items``."""
    item_item = n_items <= base.item_item_max_items
    values: dict[str, Any] = {
        "als_factors": trial.suggest_int("als_factors", 8, 128, log=True),
        "als_regularization": trial.suggest_float("als_regularization", 1e-4, 10.0, log=True),
        "als_alpha": trial.suggest_float("als_alpha", 0.5, 50.0, log=True),
        "als_iterations": trial.suggest_int("als_iterations", 5, 30),
    }
    # The members are fitted in this order (the strongest on ML-100K first), and a trial
    # is judged, for pruning, on the best member so far.
    weights: dict[str, float] = {}
    if item_item:
        values["ease_l2"] = trial.suggest_float("ease_l2", 10.0, 5_000.0, log=True)
        values["covisit_neighbours"] = trial.suggest_int("covisit_neighbours", 20, 2_000, log=True)
        values["covisit_asymmetry"] = trial.suggest_float("covisit_asymmetry", 0.0, 1.0)
        weights["ease"] = trial.suggest_float("weight_ease", 0.0, 4.0)
        weights["covisit"] = trial.suggest_float("weight_covisit", 0.0, 4.0)
    weights["als"] = trial.suggest_float("weight_als", 0.0, 4.0)
    return dataclasses.replace(base, **values, blend_weights=weights)


def objective(
    settings: Settings, data: ValidationData, base: ModelParams, k: int
) -> Callable[[optuna.Trial], float]:
    import optuna

    from offline.generators.blend import BlendGenerator
    from offline.job import blend_weight, make_members

    def run(trial: optuna.Trial) -> float:
        params = suggest(trial, base, data.n_items)
        members, _ = make_members(settings, params, data.n_items)
        best = 0.0
        for step, member in enumerate(members):
            member.fit(data.fit)
            value = ndcg(member, data, k)
            trial.set_user_attr(f"ndcg_{member.name}", value)
            best = max(best, value)
            trial.report(best, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        weights = [blend_weight(params, m.name) for m in members]
        if not any(weights):
            return 0.0  # an empty blend recommends nothing useful
        return ndcg(BlendGenerator(members, weights).use_fitted(data.fit), data, k)

    return run


def tune_job(
    settings: Settings, spec: JobSpec, on_trial: TrialCallback | None = None, **budget: Any
) -> TuneResult:
    """Tune on the training part of ``spec``'s data (the pipeline's split step, shared
    with the job through its cache)."""
    from offline.pipeline.run import run_pipeline

    pipeline = run_pipeline(
        settings, spec.source, split=spec.split, clean=spec.clean, items=spec.items
    )
    train = pd.read_parquet(pipeline.path("split", "train"))
    return tune(
        settings,
        train,
        label=spec.label,
        fingerprint=pipeline.steps["split"].key,
        k=spec.k,
        base=spec.params,
        on_trial=on_trial,
        **budget,
    )


def study_storage(settings: Settings) -> str:
    folder = settings.home / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'studies.db'}"


def tune(
    settings: Settings,
    train: pd.DataFrame,
    *,
    label: str,
    fingerprint: str,
    study: str | None = None,
    trials: int | None = 100,
    minutes: float | None = 10.0,
    k: int = 10,
    base: ModelParams | None = None,
    max_users: int = 5_000,
    seed: int = 0,
    on_trial: TrialCallback | None = None,
) -> TuneResult:
    """Run (or resume) the search on ``train``; see the module docstring."""
    import optuna

    if trials is None and minutes is None:
        raise DataError("give --trials or --minutes: the search needs a budget")
    base = base or ModelParams()
    data = validation_data(train, label, max_users, seed)
    name = study or f"recsys-{fingerprint[:16]}-k{k}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = optuna.create_study(
        study_name=name,
        storage=study_storage(settings),
        direction="maximize",
        # Seeded by the trials already run too, so a resumed study does not replay its start.
        sampler=optuna.samplers.TPESampler(seed=seed + _trial_count(settings, name)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        load_if_exists=True,
    )
    known = found.user_attrs.get("fingerprint")
    if known is None:
        found.set_user_attr("fingerprint", fingerprint)
        found.set_user_attr("label", label)
    elif known != fingerprint:
        raise DataError(
            f"study {name!r} was made on other data ({found.user_attrs.get('label')}); "
            "give another --study name"
        )
    started = [time.perf_counter()]

    def report(study_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = time.perf_counter()
        if on_trial is not None:
            best = _best(study_)
            on_trial(
                TrialLine(
                    number=trial.number,
                    state=trial.state.name.lower(),
                    value=trial.value if trial.state.name == "COMPLETE" else None,
                    best=None if best is None else best.value,
                    best_number=None if best is None else best.number,
                    seconds=now - started[0],
                )
            )
        started[0] = now

    found.optimize(
        objective(settings, data, base, k),
        n_trials=trials,
        timeout=None if minutes is None else minutes * 60.0,
        callbacks=[report],
        catch=(),
    )
    best = _best(found)
    if best is None or best.value is None:
        raise DataError(f"study {name!r}: no trial finished within the budget; give it more")
    states = [t.state for t in found.trials]
    return TuneResult(
        params=params_of(best.params, base),
        study=name,
        trials=len(states),
        complete=sum(s == optuna.trial.TrialState.COMPLETE for s in states),
        value=float(best.value),
        k=k,
        members={
            key.removeprefix("ndcg_"): float(v)
            for key, v in best.user_attrs.items()
            if key.startswith("ndcg_")
        },
        valid_users=len(data.users),
    )


def _trial_count(settings: Settings, name: str) -> int:
    import optuna

    try:
        return len(optuna.load_study(study_name=name, storage=study_storage(settings)).trials)
    except KeyError:  # no such study yet
        return 0


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def params_of(values: Mapping[str, Any], base: ModelParams) -> ModelParams:
    """A trial's flat parameters (``weight_<member>`` for blend weights) as ModelParams."""
    weights = {k.removeprefix("weight_"): float(v) for k, v in values.items() if "weight_" in k}
    fields = {k: v for k, v in values.items() if not k.startswith("weight_")}
    return dataclasses.replace(base, **fields, blend_weights=weights or base.blend_weights)
