"""``GET /v1/items/{item_id}`` and ``GET /v1/items/{item_id}/similar``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from online.bundle import CatalogueItem, ServingBundle
from online.deps import BundleDep
from online.routers.users import ID_PATTERN
from online.schemas import ItemResponse, SimilarItem, SimilarResponse

router = APIRouter(tags=["items"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown item"}}


def _known(bundle: ServingBundle, item_id: str) -> CatalogueItem:
    item = bundle.items.get(item_id)
    if item is None:
        raise HTTPException(
            404, f"item {item_id!r} is not in the catalogue of bundle {bundle.version}"
        )
    return item


@router.get("/v1/items/{item_id}", response_model=ItemResponse, responses=_NOT_FOUND)
async def item(
    item_id: Annotated[str, Path(pattern=ID_PATTERN)], bundle: BundleDep
) -> ItemResponse:
    """The catalogue entry of one item."""
    found = _known(bundle, item_id)
    return ItemResponse(
        item_id=found.item_id,
        title=found.title,
        year=found.year,
        genres=list(found.genres),
        n_interactions=found.n_interactions,
        popularity_rank=found.popularity_rank,
        trending_score=found.trending_score,
        bundle=bundle.version,
    )


@router.get("/v1/items/{item_id}/similar", response_model=SimilarResponse, responses=_NOT_FOUND)
async def similar(
    item_id: Annotated[str, Path(pattern=ID_PATTERN)],
    bundle: BundleDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> SimilarResponse:
    """The items nearest to this one in the bundle's embedding space (FAISS)."""
    _known(bundle, item_id)
    items = [_similar(bundle, other, score) for other, score in bundle.similar(item_id, k)]
    return SimilarResponse(item_id=item_id, items=items, bundle=bundle.version)


def _similar(bundle: ServingBundle, item_id: str, score: float) -> SimilarItem:
    found = bundle.items.get(item_id)
    if found is None:
        return SimilarItem(item_id=item_id, score=score, title=item_id)
    return SimilarItem(
        item_id=item_id, score=score, title=found.title, year=found.year, genres=list(found.genres)
    )
