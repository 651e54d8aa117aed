"""``recsys``: one command with a subcommand per tier and the local services."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from recsys import (
    data_cli,
    models_cli,
    monitor_cli,
    nearline_cli,
    offline_cli,
    online_cli,
    plan_cli,
    storage_cli,
)
from recsys.bench import cli as bench_cli
from recsys.console import err_console
from recsys.services import cli as services_cli
from shared.errors import RecsysError

app = typer.Typer(
    name="recsys",
    help="tiered-recsys: offline (Spark), nearline (Kafka) and online (FastAPI) recommendations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(services_cli.app, name="services")
app.add_typer(storage_cli.app, name="storage")
app.add_typer(data_cli.app, name="data")
app.add_typer(models_cli.app, name="models")
app.add_typer(offline_cli.app, name="offline")
app.add_typer(bench_cli.app, name="bench")
app.add_typer(nearline_cli.app, name="nearline")
app.add_typer(online_cli.app, name="online")


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address the web client and API listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    services: Annotated[
        bool,
        typer.Option(
            "--services", help="Real Kafka, Redis and Cassandra on 127.0.0.1 (recsys services up)."
        ),
    ] = False,
    dataset: Annotated[
        str | None,
        typer.Option(help="movielens-100k or synthetic (default: MovieLens 100K when found)."),
    ] = None,
    synthetic_interactions: Annotated[
        int, typer.Option(min=1_000, help="Size of the synthetic dataset when one is generated.")
    ] = 100_000,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train a new bundle even if one is live.")
    ] = False,
) -> None:
    """The demo: train a bundle (unless one is live), start the nearline worker and the API
    with its web client, on embedded stores (nothing to start) or --services."""
    from recsys.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            host=host,
            port=port,
            services=services,
            dataset=dataset,
            synthetic_interactions=synthetic_interactions,
            retrain=retrain,
        )
    )


app.command()(monitor_cli.monitor)
app.command("plan")(plan_cli.command)


def main() -> None:
    """Entry point: a RecsysError becomes one line on stderr and its exit code."""
    try:
        app()
    except RecsysError as err:
        err_console.print(f"[red]error:[/] {err}", soft_wrap=True)
        sys.exit(err.exit_code)
    except ValidationError as err:  # a RECSYS_* variable that does not parse
        first = err.errors()[0]
        name = "RECSYS_" + "_".join(str(p) for p in first["loc"]).upper()
        message = first["msg"].removeprefix("Value error, ")  # pydantic's prefix for ValueError
        err_console.print(f"[red]error:[/] setting {name}: {message}", soft_wrap=True)
        sys.exit(2)
