"""Invitations to a research session as ICS, for teachers' phone and desktop calendars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from icalendar import Alarm, Calendar, Event

from research.models import ResearchGroup, ResearchSession
from research.service import as_utc, starts_at

STATUS = {"planned": "CONFIRMED", "held": "CONFIRMED", "cancelled": "CANCELLED"}
REMINDER_MINUTES = 15


def session_invite(group: ResearchGroup, research_session: ResearchSession) -> bytes:
    """One VEVENT; a cancelled session goes out as METHOD:CANCEL with the same UID."""
    calendar = Calendar()
    calendar.add("prodid", "-//tongke//research//ZH")
    calendar.add("version", "2.0")
    cancelled = research_session.status == "cancelled"
    calendar.add("method", "CANCEL" if cancelled else "PUBLISH")
    calendar.add("x-wr-timezone", "Asia/Shanghai")
    begin = starts_at(research_session)
    event = Event()
    event.add("uid", f"research-session-{research_session.id}@tongke")
    # Stable across downloads, so a re-import updates instead of duplicating.
    event.add("dtstamp", as_utc(research_session.updated_at or datetime.now(UTC)))
    event.add("dtstart", begin)
    event.add("dtend", begin + timedelta(minutes=research_session.minutes))
    topic = research_session.topic or "集体教研"
    event.add("summary", f"{group.name}：{topic}")
    event.add("location", research_session.place or group.online_room)
    lines = [f"教研组：{group.name}"]
    if research_session.host is not None:
        lines.append(f"主持人：{research_session.host.name}")
    lines.append("成员：" + "、".join(m.name for m in group.members))
    event.add("description", "\n".join(lines))
    event.add("status", STATUS[research_session.status])
    event.add("sequence", 1 if cancelled else 0)
    if not cancelled:
        # A reminder on the phone or desktop calendar before the session starts.
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", f"{REMINDER_MINUTES} 分钟后开始教研：{group.name}")
        alarm.add("trigger", timedelta(minutes=-REMINDER_MINUTES))
        event.add_component(alarm)
    calendar.add_component(event)
    ical: bytes = calendar.to_ical()
    return ical
