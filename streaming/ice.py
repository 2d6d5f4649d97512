"""ICE servers for browsers: the configured STUN/TURN list, plus TURN credentials minted per
signed-in user that expire on their own (the TURN REST API's shared-secret scheme, which
coturn checks with ``use-auth-secret`` / ``static-auth-secret``).

A static TURN user shared by every browser is a password that never expires, handed to
every account that can sign in: anyone who once had a login could relay through the
school's server for good. A minted credential names its user and its end
(``<expiry>:<who>``), and its password is the HMAC-SHA1 of that name under the secret the
app and coturn share: coturn needs no user database, a leaked credential dies by itself,
and coturn's per-user quota now means something. Pupils get none: they take part in no live
media (they replay lessons), so they get no relay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from common.accounts.permissions import Principal
from common.settings import Settings

# roles that never join live media (a pupil replays lessons)
NO_RELAY_ROLES = frozenset({"student"})


def turn_credential(secret: str, username: str) -> str:
    """The password coturn expects for ``username`` under ``static-auth-secret``."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def principal_name(principal: Principal) -> str:
    """``<role>-<id>``: the account (or classroom terminal) a credential is for, as coturn's
    log and its per-user quota see it."""
    who = principal.terminal_id if principal.role == "terminal" else principal.account_id
    return f"{principal.role}-{who}"


def turn_server(settings: Settings, who: str, *, expires_at: int) -> dict[str, Any]:
    """The TURN entry of an ICE server list: ``settings.turn_urls`` with username
    ``<unix expiry>:<who>`` (coturn reads the expiry before the colon) and its password."""
    if settings.turn_secret is None:
        raise ValueError("TURN is not configured (TONGKE_TURN_URLS, TONGKE_TURN_SECRET)")
    username = f"{expires_at}:{who}"
    credential = turn_credential(settings.turn_secret.get_secret_value(), username)
    return {"urls": list(settings.turn_urls), "username": username, "credential": credential}


def browser_ice_servers(
    settings: Settings, principal: Principal, *, now: float | None = None
) -> list[dict[str, Any]]:
    """What a browser's RTCPeerConnection gets: ``settings.ice_servers`` as configured, then,
    with ``turn_urls`` and ``turn_secret`` set, those URLs with a credential minted for
    ``principal`` valid for ``turn_credential_ttl_seconds`` (none for ``NO_RELAY_ROLES``)."""
    servers = list(settings.ice_servers)
    if not settings.turn_urls or settings.turn_secret is None:
        return servers
    if principal.role in NO_RELAY_ROLES:
        return servers
    expires_at = int(now if now is not None else time.time()) + settings.turn_credential_ttl_seconds
    servers.append(turn_server(settings, principal_name(principal), expires_at=expires_at))
    return servers
