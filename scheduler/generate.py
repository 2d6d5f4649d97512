"""Generate tongke-timetable/1 problems shaped like the shared examples, at any size.

Several campuses with their own bells (town campuses on one bell, rural ones shifted), a
sync room (录播教室) per campus and special rooms in town, subject teachers who mostly stay
on one campus and a few who travel (走教), sync groups from a town lead class to rural
member classes whose bells agree within the tolerance, research sessions per subject,
a few fixed lessons and teacher unavailability.
"""

from __future__ import annotations

import random
from typing import Any

SUBJECTS: tuple[tuple[str, int, bool, str | None], ...] = (
    # subject, per_week, prefer_morning, room feature
    ("语文", 7, True, None),
    ("数学", 5, True, None),
    ("英语", 3, True, None),
    ("科学", 2, False, "lab"),
    ("道德与法治", 2, False, None),
    ("音乐", 2, False, "music"),
    ("美术", 2, False, "art"),
    ("体育", 3, False, None),
    ("信息技术", 1, False, "it"),
)
TOWN_BELL = ("08:00", "08:50", "10:00", "10:50", "13:40", "14:30", "15:20")
# Rural bells: one period shorter or later; the shifts keep some starts within 5 minutes.
RURAL_BELLS = (
    ("08:00", "08:50", "09:55", "10:45", "13:40", "14:30"),
    ("07:55", "08:45", "09:50", "10:40", "13:40", "14:30"),
    ("08:05", "08:55", "10:00", "10:50", "13:30", "14:20"),
    ("08:45", "09:35", "10:35", "13:30", "14:20", "15:10"),  # shifted: its 2nd ≈ town's 3rd
)


def _bell(starts: tuple[str, ...]) -> list[dict[str, str]]:
    def plus(hhmm: str, minutes: int) -> str:
        total = int(hhmm[:2]) * 60 + int(hhmm[3:]) + minutes
        return f"{total // 60:02d}:{total % 60:02d}"

    return [{"start": s, "end": plus(s, 40)} for s in starts]


def generate_problem(
    campuses: int = 8, classes: int = 115, seed: int = 0, *, towns: int | None = None
) -> dict[str, Any]:
    """A problem document (dict) with about `classes` classes over `campuses` campuses."""
    rng = random.Random(seed)
    towns = towns if towns is not None else max(1, campuses // 4)
    campus_docs = []
    for i in range(campuses):
        town = i < towns
        campus_docs.append(
            {
                "id": f"c{i + 1}",
                "name": f"{'城区' if town else '乡村'}校区{i + 1}",
                "bell": _bell(TOWN_BELL if town else RURAL_BELLS[i % len(RURAL_BELLS)]),
            }
        )
    # Town campuses take more classes.
    weights = [3 if i < towns else 1 for i in range(campuses)]
    per_campus = [max(1, round(classes * w / sum(weights))) for w in weights]
    rooms: list[dict[str, Any]] = []
    class_docs: list[dict[str, Any]] = []
    for campus, count in zip(campus_docs, per_campus, strict=True):
        cid = campus["id"]
        rooms.append({"id": f"{cid}-sync", "campus": cid, "capacity": 60, "features": ["sync"]})
        specials = ("lab", "music", "art", "it")
        copies = max(1, count // 8)
        for feature in specials:
            for k in range(copies):
                rooms.append(
                    {
                        "id": f"{cid}-{feature}{k + 1}",
                        "campus": cid,
                        "capacity": 55,
                        "features": [feature],
                    }
                )
        for k in range(count):
            grade = 1 + k % 6
            class_id = f"{cid}-{grade}-{k // 6 + 1}"
            rooms.append({"id": f"{class_id}-room", "campus": cid, "capacity": 50, "features": []})
            class_docs.append(
                {
                    "id": class_id,
                    "campus": cid,
                    "grade": grade,
                    "size": rng.randint(30, 45),
                    "home_room": f"{class_id}-room",
                }
            )
    # Teachers: per campus and subject, each teaching up to ~18 lessons a week.
    teachers: list[dict[str, Any]] = []
    lessons: list[dict[str, Any]] = []
    load: dict[str, int] = {}
    by_campus_subject: dict[tuple[str, str], list[str]] = {}

    def teacher_for(campus_id: str, subject: str, per_week: int) -> str:
        pool = by_campus_subject.setdefault((campus_id, subject), [])
        for tid in pool:
            if load[tid] + per_week <= 18:
                load[tid] += per_week
                return tid
        tid = f"t{len(teachers) + 1:03d}"
        teachers.append({"id": tid, "name": f"教师{len(teachers) + 1}", "max_lessons_per_day": 5})
        load[tid] = per_week
        pool.append(tid)
        return tid

    for school_class in class_docs:
        for subject, per_week, morning, needs in SUBJECTS:
            lesson: dict[str, Any] = {
                "id": f"L{len(lessons) + 1:04d}",
                "class": school_class["id"],
                "subject": subject,
                "teacher": teacher_for(school_class["campus"], subject, per_week),
                "per_week": per_week,
                "room_features": [needs] if needs else [],
            }
            if per_week > 5:
                lesson["max_per_day"] = 2
            if morning:
                lesson["prefer_morning"] = True
            lessons.append(lesson)
    # 走教: a few music/art teachers of a town also teach at one nearby rural campus.
    travel = []
    for i in range(campuses):
        for j in range(i + 1, campuses):
            travel.append(
                {
                    "from": f"c{i + 1}",
                    "to": f"c{j + 1}",
                    "minutes": 25 if j < towns else rng.choice((35, 40, 45, 50)),
                }
            )
    for lesson in lessons:
        campus_id = lesson["class"].split("-")[0]
        index = int(campus_id[1:]) - 1
        if index >= towns and lesson["subject"] in ("音乐", "美术") and rng.random() < 0.15:
            town_teachers = by_campus_subject.get(("c1", lesson["subject"]), [])
            candidates = [t for t in town_teachers if load[t] + lesson["per_week"] <= 20]
            if candidates:
                tid = rng.choice(candidates)
                load[tid] += lesson["per_week"]
                lesson["teacher"] = tid
    # Sync groups: a town 英语/道德与法治 lesson leads its grade's lesson at 1–2 rural campuses.
    sync_groups: list[dict[str, Any]] = []
    used: set[str] = set()
    rural = [c["id"] for c in campus_docs[towns:]]
    lead_pool = [
        other
        for other in lessons
        if other["class"].split("-")[0] == "c1" and other["subject"] in ("英语", "道德与法治")
    ]
    rng.shuffle(lead_pool)
    for lead in lead_pool[: max(1, len(rural))]:
        grade = lead["class"].split("-")[1]
        members = []
        for campus_id in rng.sample(rural, min(len(rural), rng.choice((1, 2)))):
            options = [
                other
                for other in lessons
                if other["class"].startswith(f"{campus_id}-{grade}-")
                and other["subject"] == lead["subject"]
                and other["id"] not in used
            ]
            if options:
                members.append(options[0]["id"])
        if members:
            used.update([lead["id"], *members])
            for lesson in lessons:
                if lesson["id"] in (lead["id"], *members):
                    lesson["room_features"] = ["sync"]
            sync_groups.append(
                {"id": f"S{len(sync_groups) + 1:02d}", "lead": lead["id"], "members": members}
            )
    # Research sessions: one per main subject per group of campuses.
    research: list[dict[str, Any]] = []
    for subject in ("语文", "数学", "英语", "科学"):
        members = sorted({other["teacher"] for other in lessons if other["subject"] == subject})
        rng.shuffle(members)
        chunk = max(2, len(members) // 2)
        for k in range(0, len(members), chunk):
            research.append(
                {
                    "id": f"R{len(research) + 1:02d}",
                    "subject": subject,
                    "members": sorted(members[k : k + chunk]),
                    "minutes": rng.choice((60, 75, 90)),
                }
            )
    for teacher in rng.sample(teachers, max(1, len(teachers) // 10)):
        teacher["unavailable"] = [
            {
                "day": rng.choice(("mon", "tue", "wed", "thu", "fri")),
                "start": "14:20",
                "end": "15:20",
            }
        ]
    fixed: list[dict[str, Any]] = []
    for lesson in rng.sample([other for other in lessons if other["id"] not in used], 6):
        campus = next(c for c in campus_docs if c["id"] == lesson["class"].split("-")[0])
        fixed.append(
            {
                "lesson": lesson["id"],
                "day": rng.choice(("mon", "wed", "fri")),
                "period": rng.randint(1, 4),
            }
        )
    # Fixed lessons of one class must not collide with each other.
    class_of = {other["id"]: other["class"] for other in lessons}
    seen: set[tuple[str, str, int]] = set()
    distinct = []
    for entry in fixed:
        key = (class_of[entry["lesson"]], entry["day"], entry["period"])
        if key not in seen:
            seen.add(key)
            distinct.append(entry)
    fixed = distinct
    return {
        "format": "tongke-timetable/1",
        "name": f"generated {campuses} campuses, {len(class_docs)} classes, seed {seed}",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "sync_tolerance_minutes": 5,
        "research_window": {"start": "08:00", "end": "17:30"},
        "campuses": campus_docs,
        "travel_minutes": travel,
        "rooms": rooms,
        "teachers": teachers,
        "classes": class_docs,
        "lessons": lessons,
        "sync_groups": sync_groups,
        "research_sessions": research,
        "fixed": fixed,
    }
