"""Join tickets the web process signs for an SFU worker."""

from __future__ import annotations

import pytest

from streaming.sfu.identity import ParticipantIdentity
from streaming.tickets import TicketError, identity_of, read_ticket, sign_ticket

SECRET = "s" * 48
LEAD = ParticipantIdentity("terminal-3", "王村口小学 三(1)班", "lead", "sync-7", campus="王村口")


def test_a_ticket_carries_the_identity_to_the_worker_it_names() -> None:
    ticket = sign_ticket(secret=SECRET, worker_id="w1", purpose="join", identity=LEAD)

    claims = read_ticket(ticket, secret=SECRET, worker_id="w1", purpose="join")

    assert identity_of(claims) == LEAD


@pytest.mark.parametrize(
    ("worker", "purpose", "secret", "code"),
    [
        ("w2", "join", SECRET, "wrong_worker"),
        ("w1", "rooms", SECRET, "wrong_worker"),
        ("w1", "join", "x" * 48, "invalid_ticket"),
    ],
)
def test_a_ticket_is_refused_by_another_worker_use_or_key(
    worker: str, purpose: str, secret: str, code: str
) -> None:
    ticket = sign_ticket(secret=SECRET, worker_id="w1", purpose="join", identity=LEAD)

    with pytest.raises(TicketError) as refused:
        read_ticket(ticket, secret=secret, worker_id=worker, purpose=purpose)  # type: ignore[arg-type]

    assert refused.value.code == code


def test_expired_and_tampered_tickets_are_refused() -> None:
    expired = sign_ticket(secret=SECRET, worker_id="w1", purpose="join", lifetime=-1)
    with pytest.raises(TicketError) as refused:
        read_ticket(expired, secret=SECRET, worker_id="w1", purpose="join")
    assert refused.value.code == "ticket_expired"

    body, signature = sign_ticket(
        secret=SECRET, worker_id="w1", purpose="join", identity=LEAD
    ).split(".")
    inspector = sign_ticket(
        secret=SECRET,
        worker_id="w1",
        purpose="join",
        identity=ParticipantIdentity("account-1", "局长", "inspector", "sync-7"),
    ).split(".")[0]
    for forged in (f"{inspector}.{signature}", f"{body}.", "", "garbage", "a.b.c"):
        with pytest.raises(TicketError):
            read_ticket(forged, secret=SECRET, worker_id="w1", purpose="join")
