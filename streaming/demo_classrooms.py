"""Simulated classrooms for the demo: live synchronized lessons whatever the time of day.

``tongke demo`` picks a few 专递课堂 groups (``plan_demo_classrooms``), issues device tokens to
the paired classroom terminals of their lead and remote campuses, and starts this module in a
process of its own::

    python -m streaming.demo_classrooms --base-url http://127.0.0.1:8000 < seats.json

Each seat is a ``ClassroomBot`` (moving picture with the campus and a clock, and a tone)
joining through the app's real signaling WebSocket ``/ws/lessons/{group}?token=...``, as the
classroom terminal would. Bots reconnect when the server restarts or the room closes, and the
process exits when its parent (the demo) is gone. Tokens come on stdin, never in ``argv``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from common.accounts.models import Account, AuthToken
from common.accounts.service import issue_token
from common.alliance.models import (
    ClassroomTerminal,
    Lesson,
    Room,
    SchoolClass,
    Subject,
    SyncGroup,
    Term,
)
from common.logging import configure_logging, get_logger
from streaming.access import lesson_room_id

log = get_logger(__name__)

TOKEN_LABEL = "演示模拟课堂"
TOKEN_LIFETIME = timedelta(days=7)
# Small pictures at a low rate keep the demo's CPU modest (encode + decode per bot).
WIDTH, HEIGHT, FPS = 320, 180, 10
CONNECT_TIMEOUT_S = 20.0
MAX_BACKOFF_S = 10.0


@dataclass(frozen=True)
class DemoSeat:
    """One classroom terminal in one simulated lesson."""

    sync_group_id: int
    code: str
    role: str  # "lead" | "remote"
    participant_id: str
    label: str  # drawn into the picture: campus and class
    token: str
    tone_hz: float


def _terminal_account(session: Session, campus_id: int) -> tuple[Account, ClassroomTerminal] | None:
    row = session.execute(
        select(Account, ClassroomTerminal)
        .join(ClassroomTerminal, Account.terminal_id == ClassroomTerminal.id)
        .join(Room, ClassroomTerminal.room_id == Room.id)
        .where(Room.campus_id == campus_id, Account.role == "terminal", Account.is_active)
        .order_by(ClassroomTerminal.id)
    ).first()
    return None if row is None else (row[0], row[1])


def plan_demo_classrooms(session: Session, *, count: int) -> list[DemoSeat]:
    """Seats for ``count`` sync groups (专递课堂 first, English first), each classroom with a
    fresh device token for its terminal; earlier demo tokens are revoked."""
    if count <= 0:
        return []
    groups = [
        (group, subject)
        for group, subject in session.execute(
            select(SyncGroup, Subject.name)
            .join(Term, SyncGroup.term_id == Term.id)
            .join(Lesson, SyncGroup.lead_lesson_id == Lesson.id)
            .join(Subject, Lesson.subject_id == Subject.id)
            .where(Term.is_current)
        )
    ]
    groups.sort(key=lambda row: (row[0].kind != "delivered", row[1] != "英语", row[0].code))
    session.execute(update(AuthToken).where(AuthToken.label == TOKEN_LABEL).values(revoked=True))
    seats: list[DemoSeat] = []
    for group, _subject in groups:
        classrooms = [("lead", group.lead_lesson)] + [("remote", m.lesson) for m in group.members]
        planned: list[DemoSeat] = []
        for role, lesson in classrooms:
            school_class = session.get_one(SchoolClass, lesson.class_id)
            found = _terminal_account(session, school_class.campus_id)
            if found is None:
                break
            account, terminal = found
            secret, _ = issue_token(
                session, account=account, kind="device", lifetime=TOKEN_LIFETIME, label=TOKEN_LABEL
            )
            planned.append(
                DemoSeat(
                    sync_group_id=group.id,
                    code=group.code,
                    role=role,
                    participant_id=f"terminal-{terminal.id}",
                    label=f"{school_class.campus.name} {school_class.name}",
                    token=secret,
                    tone_hz=440.0 + 110.0 * (len(seats) + len(planned)),
                )
            )
        else:
            seats.extend(planned)
            count -= 1
            if count == 0:
                break
    return seats


# -- the bots' process -----------------------------------------------------------------


def websocket_url(base_url: str, seat: DemoSeat) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = f"{parts.path.rstrip('/')}/ws/lessons/{seat.sync_group_id}"
    return urlunsplit((scheme, parts.netloc, path, f"token={seat.token}", ""))


async def _attend_once(base_url: str, seat: DemoSeat) -> bool:
    """One connection, until the room closes or the link drops; True once media flowed."""
    from websockets.asyncio.client import connect

    from streaming.bots import ClassroomBot, websocket_channel
    from streaming.sfu.identity import ParticipantIdentity

    identity = ParticipantIdentity(
        participant_id=seat.participant_id,
        display_name=seat.label,
        role="lead" if seat.role == "lead" else "remote",
        room_id=lesson_room_id(seat.sync_group_id),
        room_kind="lesson",
        campus=seat.label,
    )
    bot = ClassroomBot(identity, tone_hz=seat.tone_hz, width=WIDTH, height=HEIGHT, fps=FPS)
    async with connect(websocket_url(base_url, seat), open_timeout=5, max_size=2**20) as socket:
        send, receive = websocket_channel(socket)
        running = asyncio.ensure_future(bot.run(send, receive))
        started = time.monotonic()
        try:
            while not running.done():
                await asyncio.wait({running}, timeout=2.0)
                state = bot.pc.connectionState if bot.pc is not None else "new"
                if bot.connected.is_set() and state in ("failed", "closed"):
                    log.info("demo_classroom_media_lost", code=seat.code, seat=seat.label)
                    break
                if not bot.connected.is_set() and time.monotonic() - started > CONNECT_TIMEOUT_S:
                    log.warning(
                        "demo_classroom_join_timeout",
                        code=seat.code,
                        seat=seat.label,
                        errors=[e.get("code") for e in bot.errors],
                    )
                    break
        finally:
            if not running.done():
                running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await bot.close()
    return bot.connected.is_set()


async def attend(base_url: str, seat: DemoSeat) -> None:
    """Keep one classroom in its lesson: reconnect with backoff whenever it drops out."""
    backoff = 1.0
    while True:
        try:
            flowed = await _attend_once(base_url, seat)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # server down or restarting: try again
            log.debug("demo_classroom_connect_failed", seat=seat.label, error=repr(exc))
            flowed = False
        backoff = 1.0 if flowed else min(backoff * 2, MAX_BACKOFF_S)
        await asyncio.sleep(backoff)


async def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.info("demo_classrooms_parent_gone")


async def run_classrooms(base_url: str, seats: list[DemoSeat], *, parent: int | None) -> None:
    """Run every seat until cancelled (or, with ``parent``, until that process is gone)."""
    tasks = [asyncio.ensure_future(attend(base_url, seat)) for seat in seats]
    watcher = asyncio.ensure_future(
        _watch_parent(parent) if parent is not None else asyncio.Event().wait()
    )
    try:
        await watcher
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def start_process(base_url: str, seats: list[DemoSeat]) -> subprocess.Popen[bytes]:
    """Start the bots in a child process (tokens go over its stdin)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "streaming.demo_classrooms", "--base-url", base_url],
        stdin=subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps([asdict(seat) for seat in seats]).encode())
    process.stdin.close()
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m streaming.demo_classrooms",
        description="simulated classroom terminals for the demo; seats (JSON) on stdin",
    )
    parser.add_argument(
        "--base-url", required=True, help="the running app, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    configure_logging(level=args.log_level, json=False)
    # A receiver decodes nothing until the first keyframe: expected, and noisy at every join.
    logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)
    seats = [DemoSeat(**seat) for seat in json.load(sys.stdin)]
    parent = os.getppid()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_classrooms(args.base_url, seats, parent=parent))


if __name__ == "__main__":
    main()
