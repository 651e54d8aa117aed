"""CPU or GPU: one decision, from the requested device and whether torch sees CUDA.

:func:`resolve_device` makes it (``RECSYS_DEVICE``: ``auto``, ``cpu`` or ``cuda``). The
torch ranker, trained offline and served online, gets its ``torch.device`` from it
(:func:`resolve_torch_device`); implicit's ALS follows the same decision
(:func:`implicit_device`), except that it runs on the CPU, with a warning, when the
decision is the GPU but implicit was built without CUDA (its CUDA build is separate from
torch's).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DeviceChoice = Literal["auto", "cpu", "cuda"]
Device = Literal["cpu", "cuda"]
DEVICE_CHOICES: tuple[DeviceChoice, ...] = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> Device:
    """``"auto"`` -> ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``.

    Asking for ``"cuda"`` without one fails here, at start-up, not at the first request or
    mid-training; anything but ``auto``, ``cpu`` or ``cuda`` is a ``ValueError``.
    """
    if device not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {device!r}")
    if device == "cpu":
        return "cpu"
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise RuntimeError("device='cuda' asked for, but torch sees no CUDA device")
    return "cuda" if has_cuda else "cpu"


def resolve_torch_device(device: str = "auto") -> torch.device:
    """:func:`resolve_device`'s decision as a ``torch.device`` (the first GPU or the CPU)."""
    import torch

    if resolve_device(device) == "cuda":
        return torch.device("cuda", 0)
    return torch.device("cpu")


def implicit_device(device: str = "auto") -> Device:
    """Where implicit's ALS runs: :func:`resolve_device`'s decision, but ``"cpu"`` (with a
    logged warning) when that is ``"cuda"`` and implicit was built without CUDA."""
    decided = resolve_device(device)
    if decided == "cpu":
        return "cpu"
    import implicit.gpu

    if not implicit.gpu.HAS_CUDA:
        log.warning(
            "device %r resolved to cuda, but implicit was built without CUDA support; "
            "ALS runs on the CPU (install a CUDA build of implicit to train it on the GPU)",
            device,
        )
        return "cpu"
    return "cuda"
