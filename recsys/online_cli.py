"""``recsys online``: serve the online API (recommendations, items, events, health)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Annotated

import typer

from shared.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

app = typer.Typer(help="Online tier: the FastAPI ranker.", no_args_is_help=True)
_THREADS_ENV = "RECSYS_ONLINE_THREADS"  # how serve tells each worker process its threads


def api_factory() -> FastAPI:
    """The API as every worker process builds it (``uvicorn --factory``): settings from
    the environment, the nearline tier's events router included, thread counts set."""
    import faiss
    import torch

    from nearline.api import protect
    from nearline.api import router as events_router
    from online.app import create_app

    threads = int(os.environ.get(_THREADS_ENV, "1"))
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    settings = Settings()
    app = create_app(settings, routers=[events_router])
    protect(app, settings)
    return app


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="Worker processes, each with its own resident ranker.")
    ] = 1,
    threads: Annotated[
        int,
        typer.Option(
            help="Torch and FAISS threads per worker (1: tiny batches gain nothing from "
            "more, and requests already run side by side)."
        ),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Serve the API with uvicorn until SIGTERM/SIGINT."""
    import uvicorn

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ[_THREADS_ENV] = str(threads)
    uvicorn.run(
        "recsys.online_cli:api_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level.lower(),
        access_log=False,
    )
