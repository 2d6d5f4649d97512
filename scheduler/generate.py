"""Generate tongke-timetable/1 problems shaped like the shared examples, at any size.

Several campuses with their own bells (town campuses on one bell, rural ones shifted), a
sync room (录播教室) per campus and special rooms in town, subject teachers who mostly stay
on one campus and a few who travel (走教), sync groups from a town lead class to rural
member classes whose bells agree within the tolerance, research sessions per subject,
a few fixed lessons and teacher unavailability.

Instances are feasible by construction in the ways that matter: every rural bell meets the
town bell at four or more starts, a class takes part in at most one sync group, no sync
room is asked for more than half of the slots where the group's bells meet, and fixed
lessons are home-room lessons outside sync groups, one per class and teacher.
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
    ("08:45", "09:35", "10:35", "13:40", "14:30", "15:20"),  # shifted: its 4th = town's 5th
)
SYNC_TOLERANCE = 5
DAYS = ("mon", "tue", "wed", "thu", "fri")


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
    # Feasible by construction: a class takes part in at most one group, leads take turns
    # over the town campuses, and no campus's sync room (录播教室) is asked for more than
    # half of the weekly slots at which its bell meets the lead campus's bell.
    sync_groups = _sync_groups(rng, campus_docs, towns, lessons)
    used = {lid for group in sync_groups for lid in (group["lead"], *group["members"])}
    for lesson in lessons:
        if lesson["id"] in used:
            lesson["room_features"] = ["sync"]
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
    fixed = _fixed_lessons(rng, lessons, used)
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


def _starts(bell: list[dict[str, str]]) -> list[int]:
    return [int(b["start"][:2]) * 60 + int(b["start"][3:]) for b in bell]


def _shared_periods(
    lead_bell: list[dict[str, str]], member_bells: list[list[dict[str, str]]]
) -> int:
    """How many lead periods have a member period starting within the tolerance, for every
    member campus."""
    lead = _starts(lead_bell)
    members = [_starts(bell) for bell in member_bells]
    return sum(
        1
        for start in lead
        if all(any(abs(start - m) <= SYNC_TOLERANCE for m in bell) for bell in members)
    )


def _sync_groups(
    rng: random.Random,
    campus_docs: list[dict[str, Any]],
    towns: int,
    lessons: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    bells = {c["id"]: c["bell"] for c in campus_docs}
    rural = [c["id"] for c in campus_docs[towns:]]
    town_ids = [c["id"] for c in campus_docs[:towns]]
    if not rural:
        return []
    campus_of = {lesson["id"]: lesson["class"].split("-")[0] for lesson in lessons}
    # Weekly sync lessons asked of each campus's sync room.
    room_load: dict[str, int] = {}
    class_in_group: set[str] = set()
    lead_pools = {
        town: [
            lesson
            for lesson in lessons
            if campus_of[lesson["id"]] == town and lesson["subject"] in ("英语", "道德与法治")
        ]
        for town in town_ids
    }
    for pool in lead_pools.values():
        rng.shuffle(pool)
    groups: list[dict[str, Any]] = []
    attempts = 0
    while len(groups) < max(1, len(rural)) and attempts < 4 * len(rural) + 4:
        town = town_ids[attempts % len(town_ids)]
        attempts += 1
        pool = lead_pools[town]
        while pool and pool[-1]["class"] in class_in_group:
            pool.pop()
        if not pool:
            continue
        lead = pool.pop()
        grade = lead["class"].split("-")[1]
        per_week = lead["per_week"]
        members: list[dict[str, Any]] = []
        for campus_id in rng.sample(rural, min(len(rural), rng.choice((1, 2)))):
            options = [
                other
                for other in lessons
                if other["class"].startswith(f"{campus_id}-{grade}-")
                and other["subject"] == lead["subject"]
                and other["class"] not in class_in_group
            ]
            if not options:
                continue
            chosen_bells = [bells[campus_of[m["id"]]] for m in members] + [bells[campus_id]]
            shared = _shared_periods(bells[town], chosen_bells)
            capacity = len(DAYS) * shared // 2
            if (
                room_load.get(campus_id, 0) + per_week > capacity
                or room_load.get(town, 0) + per_week > capacity
            ):
                continue
            members.append(options[0])
        if not members:
            continue
        for lesson in (lead, *members):
            class_in_group.add(lesson["class"])
            campus = campus_of[lesson["id"]]
            room_load[campus] = room_load.get(campus, 0) + per_week
        groups.append(
            {
                "id": f"S{len(groups) + 1:02d}",
                "lead": lead["id"],
                "members": [m["id"] for m in members],
            }
        )
    return groups


def _fixed_lessons(
    rng: random.Random, lessons: list[dict[str, Any]], in_sync: set[str]
) -> list[dict[str, Any]]:
    """Six fixed lessons in the morning on mon/wed/fri: home-room lessons outside sync
    groups, at most one per class and per teacher, so they never collide."""
    fixed: list[dict[str, Any]] = []
    classes: set[str] = set()
    teachers: set[str] = set()
    candidates = [
        lesson for lesson in lessons if lesson["id"] not in in_sync and not lesson["room_features"]
    ]
    for lesson in rng.sample(candidates, min(len(candidates), 24)):
        if lesson["class"] in classes or lesson["teacher"] in teachers:
            continue
        classes.add(lesson["class"])
        teachers.add(lesson["teacher"])
        fixed.append(
            {
                "lesson": lesson["id"],
                "day": rng.choice(("mon", "wed", "fri")),
                "period": rng.randint(1, 4),
            }
        )
        if len(fixed) == 6:
            break
    return fixed
