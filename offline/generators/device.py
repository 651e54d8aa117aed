"""The one place that decides CPU or GPU for the offline generators."""

from __future__ import annotations

from typing import Literal

Device = Literal["cpu", "cuda"]


def resolve_device(device: str = "auto") -> Device:
    """``"auto"`` -> ``"cuda"`` when ``implicit`` was built with CUDA and sees a GPU,
    else ``"cpu"``. Asking for ``"cuda"`` without one fails here, not mid-training."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cpu":
        return "cpu"
    import implicit.gpu

    has_cuda = bool(implicit.gpu.HAS_CUDA)
    if device == "cuda" and not has_cuda:
        raise RuntimeError("device='cuda' asked for, but implicit has no CUDA support here")
    return "cuda" if has_cuda else "cpu"
