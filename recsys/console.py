"""One rich console for every subcommand, so output and progress bars don't interleave."""

from __future__ import annotations

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
