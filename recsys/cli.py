"""``recsys``: one command with a subcommand per tier and the local services."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from recsys import data_cli, models_cli, nearline_cli, offline_cli, online_cli, storage_cli
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
def demo() -> None:
    """Run the demo on embedded defaults (nothing to start)."""
    from recsys.demo import run_demo

    run_demo()


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
        err_console.print(f"[red]error:[/] setting {name}: {first['msg']}", soft_wrap=True)
        sys.exit(2)
