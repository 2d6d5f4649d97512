"""Admin API: list/get/create/update/delete for every resource in the alliance registry.

No `from __future__ import annotations` here: FastAPI must see each resource's real body model.
"""

from enum import Enum
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

import common.alliance.resources  # noqa: F401  (fills the registry)
import research.resources  # noqa: F401
from common.alliance import service
from common.alliance.service import REGISTRY, Resource
from common.errors import ValidationFailedError
from web.deps import CurrentPrincipal, DbSession

router = APIRouter(prefix="/api", tags=["admin"])


def _filters(request: Request, resource: Resource[Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in resource.filters:
        raw = request.query_params.get(name)
        if raw is None:
            continue
        if name.endswith("_id"):
            try:
                values[name] = int(raw)
            except ValueError as exc:
                raise ValidationFailedError(f"{name} 必须是整数", field=name) from exc
        else:
            values[name] = raw
    return values


def _add_routes(resource: Resource[Any]) -> None:
    create_schema = resource.create_schema
    update_schema = resource.update_schema
    out_schema = resource.out_schema
    path = f"/{resource.path}"
    tag: list[str | Enum] = [resource.path]

    def list_rows(
        request: Request,
        principal: CurrentPrincipal,
        session: DbSession,
        limit: int = Query(200, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> list[BaseModel]:
        rows = service.list_rows(
            session,
            principal,
            resource,
            filters=_filters(request, resource),
            limit=limit,
            offset=offset,
        )
        return [resource.out(row) for row in rows]

    def get_row(row_id: int, principal: CurrentPrincipal, session: DbSession) -> BaseModel:
        return resource.out(service.get(session, principal, resource, row_id))

    def create_row(
        body: create_schema,  # type: ignore[valid-type]
        principal: CurrentPrincipal,
        session: DbSession,
    ) -> BaseModel:
        return resource.out(service.create(session, principal, resource, body))

    def update_row(
        row_id: int,
        body: update_schema,  # type: ignore[valid-type]
        principal: CurrentPrincipal,
        session: DbSession,
    ) -> BaseModel:
        return resource.out(service.update(session, principal, resource, row_id, body))

    def delete_row(row_id: int, principal: CurrentPrincipal, session: DbSession) -> None:
        service.delete(session, principal, resource, row_id)

    router.add_api_route(
        path,
        list_rows,
        methods=["GET"],
        response_model=list[out_schema],  # type: ignore[valid-type]
        tags=tag,
    )
    router.add_api_route(
        path + "/{row_id}", get_row, methods=["GET"], response_model=out_schema, tags=tag
    )
    router.add_api_route(
        path, create_row, methods=["POST"], response_model=out_schema, status_code=201, tags=tag
    )
    router.add_api_route(
        path + "/{row_id}", update_row, methods=["PATCH"], response_model=out_schema, tags=tag
    )
    router.add_api_route(
        path + "/{row_id}", delete_row, methods=["DELETE"], status_code=204, tags=tag
    )


for _resource in REGISTRY.values():
    _add_routes(_resource)
