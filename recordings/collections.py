"""单元合集: teachers gather the recordings of one course unit, in the order to watch them.

Any teacher of an alliance may make a collection; only its maker changes it. Everyone reads
a collection through what they may see of the library (``service.visible_filter``): its
items are narrowed to the recordings the reader may watch, and a collection with none left
for them is not shown at all (its maker still sees it, empty or not).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.accounts.permissions import Principal
from common.alliance.models import Subject
from common.errors import NotFoundError, PermissionDeniedError, ValidationFailedError
from recordings.models import Recording, RecordingCollection, RecordingCollectionItem
from recordings.schemas import CollectionIn, CollectionItemOut, CollectionOut
from recordings.service import visible_filter

READERS = frozenset({"bureau", "alliance_admin", "school_admin", "teacher", "student"})


def _authorize_read(principal: Principal) -> None:
    if principal.role not in READERS:
        raise PermissionDeniedError("教室终端不能浏览单元合集", detail={"role": principal.role})


def may_edit(principal: Principal, collection: RecordingCollection) -> bool:
    return principal.role == "teacher" and collection.owner_account_id == principal.account_id


def _visible_items(
    session: Session, principal: Principal, collection: RecordingCollection
) -> list[CollectionItemOut]:
    rows = session.execute(
        select(RecordingCollectionItem.position, Recording)
        .join(Recording, RecordingCollectionItem.recording_id == Recording.id)
        .where(RecordingCollectionItem.collection_id == collection.id, visible_filter(principal))
        .order_by(RecordingCollectionItem.position)
    ).all()
    return [
        CollectionItemOut(
            recording_id=recording.id,
            title=recording.title,
            topic=recording.topic,
            date=recording.date,
            position=position,
        )
        for position, recording in rows
    ]


def collection_out(
    session: Session, principal: Principal, collection: RecordingCollection
) -> CollectionOut:
    return CollectionOut(
        id=collection.id,
        alliance_id=collection.alliance_id,
        title=collection.title,
        subject_id=collection.subject_id,
        grade_level=collection.grade_level,
        unit_name=collection.unit_name,
        owner_name=collection.owner_name,
        can_edit=may_edit(principal, collection),
        items=_visible_items(session, principal, collection),
    )


def _in_reach(principal: Principal, collection: RecordingCollection) -> bool:
    return principal.role == "bureau" or collection.alliance_id == principal.alliance_id


def list_collections(session: Session, principal: Principal) -> list[CollectionOut]:
    """The collections the caller may see, newest first, each with the items they may see."""
    _authorize_read(principal)
    stmt = select(RecordingCollection).order_by(RecordingCollection.id.desc())
    if principal.role != "bureau":
        stmt = stmt.where(RecordingCollection.alliance_id == principal.alliance_id)
    shown = (collection_out(session, principal, c) for c in session.scalars(stmt))
    return [c for c in shown if c.items or c.can_edit]


def get_collection(session: Session, principal: Principal, collection_id: int) -> CollectionOut:
    _authorize_read(principal)
    collection = session.get(RecordingCollection, collection_id)
    if collection is not None and _in_reach(principal, collection):
        out = collection_out(session, principal, collection)
        if out.items or out.can_edit:
            return out
    raise NotFoundError(f"单元合集 {collection_id} 不存在")


def _editable(session: Session, principal: Principal, collection_id: int) -> RecordingCollection:
    collection = session.get(RecordingCollection, collection_id)
    if collection is None or not _in_reach(principal, collection):
        raise NotFoundError(f"单元合集 {collection_id} 不存在")
    if not may_edit(principal, collection):
        raise PermissionDeniedError("只有创建合集的教师可以修改它", detail={"role": principal.role})
    return collection


def _check_names(data: CollectionIn) -> None:
    if not data.title.strip():
        raise ValidationFailedError("合集名称不能为空", field="title")
    if not data.unit_name.strip():
        raise ValidationFailedError("单元名称不能为空", field="unit_name")


def _check_subject(session: Session, principal: Principal, subject_id: int | None) -> None:
    if subject_id is None:
        return
    subject = session.get(Subject, subject_id)
    if subject is None or subject.alliance_id != principal.alliance_id:
        raise ValidationFailedError(f"学科 {subject_id} 不存在", field="subject_id")


def create_collection(
    session: Session, principal: Principal, data: CollectionIn
) -> RecordingCollection:
    if principal.role != "teacher" or principal.alliance_id is None:
        raise PermissionDeniedError("只有教师可以创建单元合集", detail={"role": principal.role})
    _check_names(data)
    _check_subject(session, principal, data.subject_id)
    collection = RecordingCollection(
        alliance_id=principal.alliance_id,
        owner_account_id=principal.account_id,
        owner_name=principal.display_name,
        title=data.title.strip(),
        subject_id=data.subject_id,
        grade_level=data.grade_level,
        unit_name=data.unit_name.strip(),
    )
    session.add(collection)
    session.flush()
    if data.recording_ids is not None:
        _place(session, principal, collection, data.recording_ids)
    return collection


def update_collection(
    session: Session, principal: Principal, collection_id: int, data: CollectionIn
) -> RecordingCollection:
    collection = _editable(session, principal, collection_id)
    _check_names(data)
    _check_subject(session, principal, data.subject_id)
    collection.title = data.title.strip()
    collection.subject_id = data.subject_id
    collection.grade_level = data.grade_level
    collection.unit_name = data.unit_name.strip()
    if data.recording_ids is not None:
        _place(session, principal, collection, data.recording_ids)
    return collection


def set_items(
    session: Session, principal: Principal, collection_id: int, recording_ids: list[int]
) -> RecordingCollection:
    """The collection's recordings become ``recording_ids``, in that order: every one must be
    a recording the teacher may see, each once; otherwise nothing changes."""
    collection = _editable(session, principal, collection_id)
    _place(session, principal, collection, recording_ids)
    return collection


def _place(
    session: Session,
    principal: Principal,
    collection: RecordingCollection,
    recording_ids: list[int],
) -> None:
    if len(set(recording_ids)) != len(recording_ids):
        raise ValidationFailedError("同一节录像不能在合集中出现两次", field="recording_ids")
    visible = set(
        session.scalars(
            select(Recording.id).where(Recording.id.in_(recording_ids), visible_filter(principal))
        )
    )
    missing = [rid for rid in recording_ids if rid not in visible]
    if missing:
        raise ValidationFailedError(
            f"录像 {missing[0]} 不存在或您无权查看", field="recording_ids", detail={"ids": missing}
        )
    collection.items.clear()
    session.flush()
    collection.items.extend(
        RecordingCollectionItem(recording_id=rid, position=index)
        for index, rid in enumerate(recording_ids)
    )


def delete_collection(session: Session, principal: Principal, collection_id: int) -> None:
    session.delete(_editable(session, principal, collection_id))
