"""``recsys online``: serve the online API (recommendations, items, events, health)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Annotated

import typer

from shared.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # online.metrics reads it in each worker

if TYPE_CHECKING:
    from fastapi import FastAPI

app = typer.Typer(help="Online tier: the FastAPI ranker.", no_args_is_help=True)
_THREADS_ENV = "RECSYS_ONLINE_THREADS"  # how serve tells each worker process its threads


def api_factory() -> FastAPI:
    """The API as every worker process builds it (``uvicorn --factory``): settings from
    the environment, the nearline tier's events router included, thread counts set."""
    from nearline.api import protect
    from nearline.api import router as events_router
    from online.app import create_app

    threads = int(os.environ.get(_THREADS_ENV, "1"))
    limit_threads(threads)
    settings = Settings()
    app = create_app(settings, routers=[events_router])
    protect(app, settings)
    return app


def limit_threads(threads: int) -> None:
    """Threads per worker for each library that computes on the request path: torch, FAISS
    (OpenMP) and numpy's BLAS (the frozen ranker's matrix products). One by default: the
    requests are the parallelism, and a library's own threads only compete for the cores
    (OpenBLAS starts one per core)."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")


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
    """Serve the API with uvicorn until SIGTERM/SIGINT.

    With several workers, /metrics answers the sum over all of them: their metrics live in
    a fresh folder of memory-mapped files (``PROMETHEUS_MULTIPROC_DIR``, deleted at exit).
    """
    import uvicorn

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ[_THREADS_ENV] = str(threads)
    metrics_dir = None
    if workers > 1:  # set before the workers start: they import prometheus_client fresh
        metrics_dir = tempfile.mkdtemp(prefix="recsys-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        uvicorn.run(
            "recsys.online_cli:api_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level.lower(),
            access_log=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
