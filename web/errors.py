"""The one place where errors become HTTP responses: JSON for the API, never a traceback."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import AppError, RateLimitedError
from common.logging import get_logger

log = get_logger(__name__)

_STATUS_MESSAGES = {
    404: "页面或资源不存在",
    405: "不支持此请求方法",
    401: "请先登录",
    403: "没有权限",
}

_PYDANTIC_MESSAGES = {
    "missing": "必填",
    "extra_forbidden": "不允许的字段",
    "int_parsing": "必须是整数",
    "int_type": "必须是整数",
    "bool_parsing": "必须是布尔值",
    "string_too_short": "太短",
    "string_too_long": "太长",
    "string_pattern_mismatch": "格式不正确",
    "literal_error": "取值不在允许范围内",
    "greater_than_equal": "太小",
    "less_than_equal": "太大",
    "time_parsing": "时间格式应为 HH:MM",
    "date_from_datetime_parsing": "日期格式应为 YYYY-MM-DD",
    "date_parsing": "日期格式应为 YYYY-MM-DD",
    "json_invalid": "JSON 格式错误",
    "too_short": "至少需要一项",
    "too_long": "项目过多",
    "model_attributes_type": "格式不正确",
    "dict_type": "必须是对象",
    "list_type": "必须是列表",
}


def error_body(
    code: str, message: str, *, field: str | None = None, detail: Any = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field, "detail": detail}}


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _explain(error: dict[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind == "value_error":
        # Our own validators speak Chinese already.
        return str(error.get("msg", "")).removeprefix("Value error, ")
    return _PYDANTIC_MESSAGES.get(kind, str(error.get("msg", "无效")))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        log.info(
            "request refused",
            path=request.url.path,
            status=exc.status_code,
            code=exc.code,
            reason=exc.message,
            detail=exc.detail,
        )
        headers = (
            {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimitedError) else None
        )
        detail = exc.detail if exc.status_code in (409, 422, 429) else None
        return JSONResponse(
            error_body(exc.code, exc.message, field=exc.field, detail=detail),
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": _field_of(tuple(err.get("loc", ()))), "message": _explain(err)}
            for err in exc.errors()
        ]
        first = problems[0] if problems else {"field": "body", "message": "无效"}
        return JSONResponse(
            error_body(
                "invalid",
                f"请求数据无效：{first['field']} {first['message']}",
                field=first["field"],
                detail=problems,
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (
            exc.detail
            if isinstance(exc.detail, str)
            and exc.detail
            not in (
                "Not Found",
                "Method Not Allowed",
            )
            else _STATUS_MESSAGES.get(exc.status_code, "请求失败")
        )
        return JSONResponse(
            error_body(f"http_{exc.status_code}", message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path, method=request.method)
        return JSONResponse(
            error_body("internal", "服务器内部错误，已记录，请稍后再试"), status_code=500
        )
