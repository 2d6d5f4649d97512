"""Generic, permission-checked create/read/update/delete over the alliance's resources.

Each resource (see `resources.py`) says how to reach its alliance/school/class from its table;
every operation here derives the row's `Scope` from that and asks `permissions.authorize`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, null, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, Session

from common.accounts.permissions import (
    KIND_LABELS,
    Action,
    Kind,
    Principal,
    Scope,
    authorize,
    can,
    visibility,
)
from common.db import Base
from common.errors import ConflictError, NotFoundError, ValidationFailedError

M = TypeVar("M", bound=Base)
Column = ColumnElement[Any] | QueryableAttribute[Any]


@dataclass(frozen=True)
class ScopePath:
    """A select of the model joined up to its school and alliance, and the columns to read."""

    stmt: Select[Any]
    alliance: Column | None
    school: Column | None = None
    class_: Column | None = None
    student: Column | None = None
    account: Column | None = None
    terminal: Column | None = None

    def columns(self) -> list[Column | None]:
        return [
            self.alliance,
            self.school,
            self.class_,
            self.student,
            self.account,
            self.terminal,
        ]


def _scope_from_row(values: Sequence[Any]) -> Scope:
    return Scope(*values)


@dataclass(frozen=True)
class Resource(Generic[M]):
    kind: Kind
    model: type[M]
    path: str
    create_schema: type[BaseModel]
    update_schema: type[BaseModel]
    out_schema: type[BaseModel]
    scope_path: Callable[[], ScopePath]
    create: Callable[[Session, Principal, Any], M]
    update: Callable[[Session, M, Any], None]
    # The resource and payload field whose scope a new row inherits (None: top level).
    parent: tuple[str, str] | None = None
    # Query parameters accepted by the list route, mapped to columns.
    filters: dict[str, Callable[[], Column]] = field(default_factory=dict)
    to_out: Callable[[M], BaseModel] | None = None
    # Overrides `parent` when a new row's scope comes from elsewhere (accounts).
    create_scope: Callable[[Session, Principal, Any], Scope] | None = None
    # Refuses (ConflictError) deleting a row that other data still needs; nothing is changed.
    before_delete: Callable[[Session, M], None] | None = None

    def out(self, row: M) -> BaseModel:
        return self.to_out(row) if self.to_out else self.out_schema.model_validate(row)


REGISTRY: dict[str, Resource[Any]] = {}


def register(resource: Resource[M]) -> Resource[M]:
    REGISTRY[resource.path] = resource
    return resource


def _scoped_rows(
    session: Session, resource: Resource[M], stmt: Select[Any]
) -> list[tuple[M, Scope]]:
    path = resource.scope_path()
    cols = [c if c is not None else _null() for c in path.columns()]
    rows = session.execute(stmt.add_columns(*cols)).all()
    return [(row[0], _scope_from_row(row[1:])) for row in rows]


def _null() -> Column:
    return null()


def load_scoped(session: Session, resource: Resource[M], row_id: int) -> tuple[M, Scope]:
    """The row and its scope, or NotFoundError."""
    path = resource.scope_path()
    pk = resource.model.__table__.c.id
    found = _scoped_rows(session, resource, path.stmt.where(pk == row_id))
    if not found:
        raise NotFoundError(f"{KIND_LABELS[resource.kind]} {row_id} 不存在")
    return found[0]


def get(session: Session, principal: Principal, resource: Resource[M], row_id: int) -> M:
    row, scope = load_scoped(session, resource, row_id)
    authorize(principal, Action.READ, resource.kind, scope)
    return row


def list_rows(
    session: Session,
    principal: Principal,
    resource: Resource[M],
    *,
    filters: dict[str, Any] | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[M]:
    """Rows the principal may read, narrowed in SQL by scope and then checked one by one."""
    level = visibility(principal, resource.kind)
    if level is None:
        authorize(principal, Action.READ, resource.kind, Scope(alliance_id=-1))
    path = resource.scope_path()
    stmt = path.stmt
    if level != "all" and path.alliance is not None:
        stmt = stmt.where(path.alliance == principal.alliance_id)
    for name, value in (filters or {}).items():
        if value is not None:
            stmt = stmt.where(resource.filters[name]() == value)
    pk = resource.model.__table__.c.id
    rows = _scoped_rows(session, resource, stmt.order_by(pk))
    visible = [row for row, scope in rows if can(principal, Action.READ, resource.kind, scope)]
    return visible[offset : offset + limit]


def parent_scope(session: Session, resource: Resource[Any], payload: BaseModel) -> Scope:
    if resource.parent is None:
        return Scope()
    parent_path, field_name = resource.parent
    parent_id = getattr(payload, field_name)
    try:
        _, scope = load_scoped(session, REGISTRY[parent_path], parent_id)
    except NotFoundError as exc:
        raise ValidationFailedError(exc.message, field=field_name) from exc
    # A new row is not yet anyone's class or record: manage rights are judged at school level.
    return Scope(alliance_id=scope.alliance_id, school_id=scope.school_id, class_id=scope.class_id)


def create(session: Session, principal: Principal, resource: Resource[M], payload: BaseModel) -> M:
    scope = (
        resource.create_scope(session, principal, payload)
        if resource.create_scope
        else parent_scope(session, resource, payload)
    )
    authorize(principal, Action.MANAGE, resource.kind, scope)
    with _conflicts(session, resource):
        row = resource.create(session, principal, payload)
        session.flush()
    return row


def update(
    session: Session, principal: Principal, resource: Resource[M], row_id: int, payload: BaseModel
) -> M:
    row, scope = load_scoped(session, resource, row_id)
    authorize(principal, Action.MANAGE, resource.kind, scope)
    with _conflicts(session, resource):
        resource.update(session, row, payload)
        session.flush()
    return row


def delete(session: Session, principal: Principal, resource: Resource[M], row_id: int) -> None:
    row, scope = load_scoped(session, resource, row_id)
    authorize(principal, Action.MANAGE, resource.kind, scope)
    if resource.before_delete is not None:
        resource.before_delete(session, row)
    with _conflicts(session, resource):
        session.delete(row)
        session.flush()


@contextmanager
def _conflicts(session: Session, resource: Resource[Any]) -> Iterator[None]:
    """Turn a unique-key or reference violation into a ConflictError; the session stays usable."""
    try:
        with session.begin_nested():
            yield
    except IntegrityError as exc:
        label = KIND_LABELS[resource.kind]
        raise ConflictError(
            f"{label}与已有数据冲突：编号或名称重复，或仍被其他数据引用", detail=str(exc.orig)
        ) from exc


def require_same(
    session: Session,
    model: type[Base],
    row_id: int | None,
    *,
    field_name: str,
    label: str,
    check: Callable[[Any], bool] | None = None,
    why: str = "",
) -> Any:
    """Load a referenced row for a payload field; 422 when missing or out of place."""
    if row_id is None:
        return None
    row = session.get(model, row_id)
    if row is None:
        raise ValidationFailedError(f"{label} {row_id} 不存在", field=field_name)
    if check is not None and not check(row):
        raise ValidationFailedError(f"{label} {row_id} {why}", field=field_name)
    return row


def require_unique(
    session: Session,
    model: type[Base],
    *,
    where: Sequence[ColumnElement[bool]],
    own_id: int | None,
    field_name: str,
    message: str,
) -> None:
    """409 with `message` (and the field) when another row of `model` matches `where`."""
    pk = model.__table__.c.id
    stmt = select(pk).where(*where)
    if own_id is not None:
        stmt = stmt.where(pk != own_id)
    if session.scalar(stmt.limit(1)) is not None:
        raise ConflictError(message, field=field_name)


def apply_fields(row: Base, payload: BaseModel, names: Sequence[str]) -> None:
    """Copy the fields that were sent (PATCH semantics) onto the row."""
    for name in names:
        if name in payload.model_fields_set:
            value = getattr(payload, name)
            if value is None and not _nullable(row, name):
                raise ValidationFailedError("此字段不能为空", field=name)
            setattr(row, name, value)


def _nullable(row: Base, name: str) -> bool:
    column = row.__table__.c.get(name)
    return bool(column is not None and column.nullable)
