"""``POST /v1/admin/reload``: swap to the registry's live bundle now (token required)."""

from __future__ import annotations

from fastapi import APIRouter

from online.deps import AdminDep, HolderDep
from online.schemas import ReloadResponse

router = APIRouter(tags=["admin"], dependencies=[AdminDep])


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses={401: {"description": "Bad token"}, 404: {"description": "Admin disabled"}},
)
async def reload(holder: HolderDep) -> ReloadResponse:
    """Load the live bundle if it changed (also retries one that failed to load)."""
    swapped = await holder.refresh(force=True)
    current = holder.current
    return ReloadResponse(
        swapped=swapped, bundle=current.version if current else None, error=holder.error
    )
