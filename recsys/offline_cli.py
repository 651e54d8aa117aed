"""``recsys offline run|tune|evaluate``: the offline job, its parameter search, and the
evaluation of a bundle.

Progress goes to stderr (one line per step as it finishes), results to stdout: a table,
or with ``--json`` one JSON object (``version``, ``metrics`` with ``ndcg@10`` ...).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from recsys.console import console, err_console
from recsys.offline_inputs import (
    ColumnsOpt,
    DatasetOpt,
    HoldoutOpt,
    InteractionsOpt,
    ItemsOpt,
    JsonOpt,
    KOpt,
    MinItemOpt,
    MinUserOpt,
    MinutesOpt,
    RatingMaxOpt,
    SplitOpt,
    StudyOpt,
    TrialsOpt,
    job_spec,
)
from shared.errors import DataError
from shared.settings import Settings

if TYPE_CHECKING:
    from offline.spec import JobSpec

app = typer.Typer(
    help="Offline tier: train, tune, evaluate and publish a bundle.", no_args_is_help=True
)


@app.command()
def run(
    dataset: DatasetOpt = None,
    interactions: InteractionsOpt = None,
    columns: ColumnsOpt = None,
    items: ItemsOpt = None,
    split: SplitOpt = "benchmark",
    holdout: HoldoutOpt = None,
    k: KOpt = 10,
    candidates: Annotated[
        int | None,
        typer.Option(
            min=1, max=10_000, help="Candidates per user (default: setting candidates_per_user)."
        ),
    ] = None,
    min_user_interactions: MinUserOpt = 1,
    min_item_interactions: MinItemOpt = 1,
    rating_max: RatingMaxOpt = None,
    params: Annotated[
        Path | None,
        typer.Option(help="Generator and blend parameters from a file (`recsys offline tune`)."),
    ] = None,
    tune: Annotated[
        bool, typer.Option("--tune", help="Tune the parameters on this data first (see tune).")
    ] = False,
    trials: TrialsOpt = None,
    minutes: MinutesOpt = None,
    study: StudyOpt = None,
    ranker: Annotated[
        bool, typer.Option(help="Train the torch ranker (else rank by the blend).")
    ] = True,
    promote: Annotated[
        bool, typer.Option(help="Make the new bundle and its candidates live.")
    ] = True,
    recommendations_out: Annotated[
        Path | None,
        typer.Option(
            help="Write every evaluated user's final top-k (user_id, item_id, rank, score); .csv or .parquet."
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Run the offline job: Spark pipeline, generators, ranker, index, bundle, candidates."""
    from offline.job import run_offline

    if params is not None and tune:
        raise DataError("give --params FILE or --tune, not both")
    if not tune and (trials is not None or minutes is not None or study is not None):
        raise DataError("--trials, --minutes and --study apply with --tune")
    settings = Settings()
    spec = job_spec(
        settings,
        dataset=dataset,
        interactions=interactions,
        columns=columns,
        items=items,
        split=split,
        holdout=holdout,
        k=k,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
        rating_max=rating_max,
        candidates_per_user=candidates or settings.candidates_per_user,
        train_ranker=ranker,
        promote=promote,
        recommendations_out=recommendations_out,
    )
    if params is not None:
        from offline.params_file import load_params

        model_params, tuned = load_params(params)
        spec = replace(spec, params=model_params, params_origin={"file": str(params), **tuned})
    started = time.perf_counter()
    if tune:
        spec = _tuned(settings, spec, trials=trials, minutes=minutes, study=study)

    def progress(step: str, seconds: float, detail: str) -> None:
        err_console.print(f"[green]✓[/] {step:<11} {seconds:7.1f}s  {detail}", soft_wrap=True)

    result = run_offline(settings, spec, progress)
    total = time.perf_counter() - started
    out: dict[str, Any] = {
        "version": result.version,
        "bundle": str(result.bundle),
        "promoted": result.promoted,
        "metrics": result.metrics,
        "seconds": {**result.seconds, "total": total},
    }
    if json:
        console.print_json(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return
    _print_summary(out, result.report, spec)


@app.command("tune")
def tune_command(
    dataset: DatasetOpt = None,
    interactions: InteractionsOpt = None,
    columns: ColumnsOpt = None,
    split: SplitOpt = "benchmark",
    k: KOpt = 10,
    min_user_interactions: MinUserOpt = 1,
    min_item_interactions: MinItemOpt = 1,
    rating_max: RatingMaxOpt = None,
    trials: TrialsOpt = None,
    minutes: MinutesOpt = None,
    study: StudyOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Where the best parameters go (default: <home>/tune/<study>.json)."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Tune the generators' parameters and blend weights on this data (Optuna).

    The search scores each trial on a validation part carved out of the training part,
    never on the test part; it resumes a study kept under RECSYS_HOME/tune/.
    """
    settings = Settings()
    spec = job_spec(
        settings,
        dataset=dataset,
        interactions=interactions,
        columns=columns,
        split=split,
        k=k,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
        rating_max=rating_max,
    )
    result, path = _run_tune(settings, spec, trials, minutes, study, out)
    summary = {
        "study": result.study,
        "params_file": str(path),
        "trials": result.trials,
        "complete_trials": result.complete,
        "validation_users": result.valid_users,
        f"validation_ndcg@{k}": result.value,
        "members": result.members,
        "params": result.params.as_dict(),
    }
    if json:
        console.print_json(orjson.dumps(summary).decode())
        return
    console.print(
        f"best validation nDCG@{k} {result.value:.4f} after {result.trials} trials "
        f"(study {result.study}); each generator alone: "
        + ", ".join(f"{m} {v:.4f}" for m, v in result.members.items())
    )
    console.print(f"parameters: {path} (use with `recsys offline run --params {path}`)")


def _run_tune(
    settings: Settings,
    spec: JobSpec,
    trials: int | None,
    minutes: float | None,
    study: str | None,
    out: Path | None,
) -> tuple[Any, Path]:
    """Tune with a progress line per trial and write the params file."""
    from offline.params_file import write_params
    from offline.tune import TrialLine, tune_job

    if trials is None and minutes is None:
        trials, minutes = 100, 10.0

    def line(t: TrialLine) -> None:
        value = "pruned" if t.value is None else f"nDCG {t.value:.4f}"
        best = "" if t.best is None else f"  best {t.best:.4f} (#{t.best_number})"
        err_console.print(f"[green]✓[/] trial {t.number:<4} {t.seconds:6.1f}s  {value}{best}")

    result = tune_job(settings, spec, line, trials=trials, minutes=minutes, study=study)
    path = write_params(out or settings.home / "tune" / f"{result.study}.json", result, spec.label)
    return result, path


def _tuned(
    settings: Settings,
    spec: JobSpec,
    *,
    trials: int | None,
    minutes: float | None,
    study: str | None,
) -> JobSpec:
    """``spec`` with parameters tuned on its own training data (``run --tune``)."""
    from offline.params_file import load_params

    _, path = _run_tune(settings, spec, trials, minutes, study, None)
    params, tuned = load_params(path, spec.params)
    return replace(spec, params=params, params_origin={"file": str(path), **tuned})


def _print_summary(out: dict[str, Any], report: dict[str, Any], spec: JobSpec) -> None:
    from rich.table import Table

    console.print(
        f"bundle [bold]{out['version']}[/] at {out['bundle']}"
        + (" (live)" if out["promoted"] else " (not promoted)")
    )
    metrics = out["metrics"]
    if not metrics:
        console.print("no evaluation (split none): trained on everything")
        return
    table = Table(
        "list", *(f"{m}@{spec.k}" for m in ("map", "ndcg", "precision", "recall")), "coverage"
    )
    rows = {"final (ranked)": metrics, **report.get("baselines", {})}
    for name, values in rows.items():
        table.add_row(
            name,
            *(f"{values[f'{m}@{spec.k}']:.4f}" for m in ("map", "ndcg", "precision", "recall")),
            f"{values[f'coverage@{spec.k}']:.3f}",
        )
    console.print(table)
    console.print(f"report: {out['bundle']}/report.md")


@app.command()
def evaluate(
    bundle: Annotated[str, typer.Argument(help="Bundle version (see `recsys models list`).")],
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Re-evaluate a bundle's stored candidate lists on the test part it was built with."""
    from offline.evaluate_bundle import evaluate_bundle

    out = evaluate_bundle(Settings(), bundle)
    if json:
        console.print_json(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return
    console.print(
        f"bundle [bold]{bundle}[/]: {out['users']:,} users evaluated from the candidate store"
    )
    for name, value in out["metrics"].items():
        if name != "users":  # printed above
            console.print(f"  {name:<22} {value:.4f}")


@app.command()
def schedule(
    every: Annotated[
        str, typer.Option(help="Retrain when the last run is this old (90s, 15m, 6h, 1d).")
    ] = "1d",
    max_age: Annotated[
        str | None, typer.Option(help="Retrain when the live bundle is this old.")
    ] = None,
    prometheus: Annotated[
        str | None,
        typer.Option(help="Prometheus URL: retrain when a drift or stale-bundle alert fires."),
    ] = None,
    check_every: Annotated[str, typer.Option(help="How often the loop looks.")] = "5m",
    metric: Annotated[str, typer.Option(help="What the promotion gate compares.")] = "ndcg@10",
    tolerance: Annotated[
        float, typer.Option(help="How much worse than the live bundle a new one may be.")
    ] = 0.002,
    api: Annotated[
        str, typer.Option(help="The online API to reload and watch after a promotion.")
    ] = "http://127.0.0.1:8000",
    watch: Annotated[
        str, typer.Option(help="How long to watch the API after a promotion (0: not at all).")
    ] = "5m",
    run_arg: Annotated[
        list[str] | None,
        typer.Option(
            help="An argument for `recsys offline run` (repeat; default: --dataset lake)."
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Look once, retrain if due, and exit (for a timer).")
    ] = False,
    now: Annotated[bool, typer.Option("--now", help="Retrain now, whatever is due.")] = False,
    json: JsonOpt = False,
) -> None:
    """Retrain on the event lake when due, promote through the gate, watch, roll back.

    Due: on the schedule (--every, counted from the last run in the registry's history),
    when the live bundle passes --max-age, or when Prometheus has a drift or stale-bundle
    alert firing. Each decision is in `recsys models history`.
    """
    from recsys.retrain import Policy, duration, tick

    settings = Settings()
    policy = Policy(
        every_s=duration(every),
        max_age_s=None if max_age is None else duration(max_age),
        prometheus=prometheus,
        metric=metric,
        tolerance=tolerance,
        watch_s=duration(watch),
        api=api,
        run_args=tuple(run_arg) if run_arg else ("--dataset", "lake"),
    )
    pause = duration(check_every)
    force = now
    while True:
        out = tick(settings, policy, force=force)
        force = False
        if json:
            console.print_json(orjson.dumps(out).decode())
        elif out.get("retrained") or out.get("error"):
            console.print(", ".join(f"{k}: {v}" for k, v in out.items()), markup=False)
        if once or now:
            return
        time.sleep(pause)
