"""Short-lived signed tickets the web process hands an SFU worker.

The web process authenticates a join (session cookie or device token, roles and school scope
in ``streaming.access``) and then vouches for the resulting identity to the room's worker
with a ticket: the identity, the worker it is meant for and an expiry, signed with HMAC-SHA256
under a key derived from ``TONGKE_SECRET_KEY``. A worker trusts nothing else, so its internal
port never sees a password or a device token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import asdict
from typing import Any, Literal

from streaming.sfu.errors import StreamingError
from streaming.sfu.identity import ParticipantIdentity

TICKET_LIFETIME_S = 30.0
Purpose = Literal["join", "rooms", "record"]


class TicketError(StreamingError):
    code = "invalid_ticket"


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"tongke-sfu-ticket/1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_ticket(
    *,
    secret: str,
    worker_id: str,
    purpose: Purpose,
    identity: ParticipantIdentity | None = None,
    command: dict[str, Any] | None = None,
    lifetime: float = TICKET_LIFETIME_S,
) -> str:
    """A ticket for ``worker_id`` only, valid for ``lifetime`` seconds; ``command`` is what
    the web process authorized the worker to do (a ``record`` ticket's start or stop)."""
    claims: dict[str, Any] = {"aud": worker_id, "pur": purpose, "exp": time.time() + lifetime}
    if identity is not None:
        claims["who"] = asdict(identity)
    if command is not None:
        claims["cmd"] = command
    body = _b64(json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode())
    signature = hmac.new(_key(secret), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(signature)}"


def read_ticket(ticket: str, *, secret: str, worker_id: str, purpose: Purpose) -> dict[str, Any]:
    """The ticket's claims; ``TicketError`` when forged, expired, or meant for another use."""
    body, _, signature = ticket.partition(".")
    expected = hmac.new(_key(secret), body.encode(), hashlib.sha256).digest()
    try:
        valid = hmac.compare_digest(_unb64(signature), expected)
        claims: dict[str, Any] = json.loads(_unb64(body)) if valid else {}
    except ValueError as exc:
        raise TicketError("接入凭证无效") from exc
    if not valid or not isinstance(claims, dict):
        raise TicketError("接入凭证无效")
    if claims.get("aud") != worker_id or claims.get("pur") != purpose:
        raise TicketError("接入凭证不属于本媒体服务器", code="wrong_worker")
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < time.time():
        raise TicketError("接入凭证已过期", code="ticket_expired")
    return claims


def identity_of(claims: dict[str, Any]) -> ParticipantIdentity:
    """The participant a join ticket vouches for."""
    who = claims.get("who")
    if not isinstance(who, dict):
        raise TicketError("接入凭证缺少参与者信息")
    try:
        return ParticipantIdentity(**who)
    except TypeError as exc:
        raise TicketError("接入凭证缺少参与者信息") from exc
