"""单元合集 API: teachers gather a course unit's recordings; everyone reads what they may see."""

from __future__ import annotations

from fastapi import APIRouter, Response

from recordings import collections
from recordings.schemas import CollectionIn, CollectionItemsIn, CollectionOut
from web.deps import CurrentPrincipal, DbSession

router = APIRouter(prefix="/api/collections", tags=["collections"])


@router.get("", response_model=list[CollectionOut])
def list_collections(principal: CurrentPrincipal, session: DbSession) -> list[CollectionOut]:
    """The collections of the caller's alliance that have a recording they may watch."""
    return collections.list_collections(session, principal)


@router.post("", response_model=CollectionOut, status_code=201)
def create(body: CollectionIn, principal: CurrentPrincipal, session: DbSession) -> CollectionOut:
    """A new, empty collection (teachers)."""
    made = collections.create_collection(session, principal, body)
    return collections.collection_out(session, principal, made)


@router.get("/{collection_id}", response_model=CollectionOut)
def read(collection_id: int, principal: CurrentPrincipal, session: DbSession) -> CollectionOut:
    return collections.get_collection(session, principal, collection_id)


@router.put("/{collection_id}", response_model=CollectionOut)
def update(
    collection_id: int, body: CollectionIn, principal: CurrentPrincipal, session: DbSession
) -> CollectionOut:
    """Title, subject, grade, unit (its maker)."""
    changed = collections.update_collection(session, principal, collection_id, body)
    return collections.collection_out(session, principal, changed)


@router.put("/{collection_id}/items", response_model=CollectionOut)
def set_items(
    collection_id: int, body: CollectionItemsIn, principal: CurrentPrincipal, session: DbSession
) -> CollectionOut:
    """The recordings in their order: adds, removes and reorders at once (its maker)."""
    changed = collections.set_items(session, principal, collection_id, body.recording_ids)
    return collections.collection_out(session, principal, changed)


@router.delete("/{collection_id}", status_code=204)
def delete(collection_id: int, principal: CurrentPrincipal, session: DbSession) -> Response:
    collections.delete_collection(session, principal, collection_id)
    return Response(status_code=204)
