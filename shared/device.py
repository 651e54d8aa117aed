"""The one place that decides CPU or GPU for torch (the ranker, offline and online).

``implicit`` (offline ALS) has its own CUDA build and its own check in
``offline.generators.device``; torch's CUDA support is independent of it, so the two
answers can differ on one machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_torch_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> the first CUDA device when torch sees one, else the CPU.

    Asking for ``"cuda"`` without one fails here, at start-up, not at the first request.
    """
    import torch

    if device not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {device!r}")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise RuntimeError("device='cuda' asked for, but torch sees no CUDA device")
    if device == "cpu" or not has_cuda:
        return torch.device("cpu")
    return torch.device("cuda", 0)
