"""``recsys online``: serve the online API (recommendations, items, events, health)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from shared.settings import Settings

app = typer.Typer(help="Online tier: the FastAPI ranker.", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
    threads: Annotated[
        int,
        typer.Option(
            help="Torch and FAISS threads per request (1: tiny batches gain "
            "nothing from more, and requests already run side by side)."
        ),
    ] = 1,
) -> None:
    """Serve the API with uvicorn until SIGTERM/SIGINT (one process: the ranker is
    resident in it; run more replicas behind a load balancer to scale)."""
    import faiss
    import torch
    import uvicorn

    from nearline.api import router as events_router
    from online.app import create_app
    from online.settings import OnlineSettings

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    api = create_app(Settings(), OnlineSettings(), routers=[events_router])
    uvicorn.run(api, host=host, port=port, log_level=log_level.lower(), access_log=False)
