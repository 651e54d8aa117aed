"""``recsys bench offline|nearline|online|all|faults|sizes``: each subcommand lives in its own module."""

from __future__ import annotations

import typer

from recsys.bench import everything, faults, nearline, offline, online, sizes

app = typer.Typer(
    help="Benchmarks: wall time, throughput, latency and memory on this machine.",
    no_args_is_help=True,
)
app.command("offline")(offline.command)
app.command("nearline")(nearline.command)
app.command("online")(online.command)
app.command("all")(everything.command)
app.command("faults")(faults.command)
app.command("sizes")(sizes.command)
