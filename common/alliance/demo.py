"""Demo county 遂昌县: two alliances with schools, bells, people, a consistent timetable and logins.

`seed_demo` fills an empty database so that every screen has something real to show: a town
education group with two campuses and a 同步课堂 between them, and a rural alliance whose lead
school delivers English and music (专递课堂) to two small schools that lack those teachers.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from itertools import pairwise
from typing import TypedDict

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.accounts.models import Account
from common.accounts.passwords import hash_password
from common.accounts.service import check_password_strength, create_account
from common.alliance.models import (
    Alliance,
    BellSchedule,
    CalendarDay,
    Campus,
    ClassroomTerminal,
    Grade,
    Lesson,
    Period,
    Room,
    School,
    SchoolClass,
    Student,
    Subject,
    SyncGroup,
    SyncGroupMember,
    Teacher,
    Term,
    TimetableEntry,
    TravelTime,
    grade_name,
)
from common.errors import ConflictError

logger = logging.getLogger(__name__)

COUNTY = "遂昌县"
GROUP_NAME = "遂昌实验教育集团"
RURAL_NAME = "王村口老区教育联盟"
DEMO_ALLIANCES = (GROUP_NAME, RURAL_NAME)
TERM_NAME = "2026学年第一学期"
TEACHING_DAYS = ("mon", "tue", "wed", "thu", "fri")
SYNC_TOLERANCE_MINUTES = 5
SEED = 2026
_PLACEMENT_ATTEMPTS = 40

_GRADE_DIGITS = {1: "一", 2: "二", 3: "三", 4: "四", 5: "五", 6: "六"}

# (name, is_main, is_scarce)
SUBJECTS: tuple[tuple[str, bool, bool], ...] = (
    ("语文", True, False),
    ("数学", True, False),
    ("英语", True, False),
    ("科学", False, False),
    ("道德与法治", False, False),
    ("音乐", False, True),
    ("美术", False, True),
    ("体育", False, True),
    ("信息科技", False, True),
    ("心理健康", False, True),
)

# Lessons per week for grades 1..6 (浙江省义务教育课程设置, simplified).
CURRICULUM: dict[str, tuple[int, int, int, int, int, int]] = {
    "语文": (7, 7, 6, 6, 6, 6),
    "数学": (5, 5, 5, 5, 5, 5),
    "英语": (0, 0, 2, 2, 3, 3),
    "科学": (1, 1, 2, 2, 2, 2),
    "道德与法治": (2, 2, 2, 2, 2, 2),
    "音乐": (2, 2, 2, 2, 2, 2),
    "美术": (2, 2, 2, 2, 2, 2),
    "体育": (4, 4, 3, 3, 3, 3),
    "信息科技": (0, 0, 1, 1, 1, 1),
    "心理健康": (1, 1, 1, 1, 1, 1),
}

# Lessons of these subjects go to a special room when the campus has one.
SUBJECT_ROOM_FEATURE = {"音乐": "music", "美术": "art", "信息科技": "computer"}


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class DemoLogin:
    """One demo account and what logging in with it shows."""

    username: str
    role: str
    display_name: str
    shows: str
    # Classroom terminals have no password: they log in by pairing code.
    uses_password: bool = True


@dataclass(frozen=True)
class DemoSummary:
    """What `seed_demo` created: the logins to try and how many rows of each kind."""

    alliances: tuple[str, ...]
    logins: tuple[DemoLogin, ...]
    schools: int
    campuses: int
    classes: int
    teachers: int
    students: int
    rooms: int
    lessons: int
    sync_groups: int
    timetable_entries: int

    def login(self, username: str) -> DemoLogin:
        for entry in self.logins:
            if entry.username == username:
                return entry
        raise KeyError(username)


# --------------------------------------------------------------------------- the county


@dataclass(frozen=True)
class _BellSpec:
    name: str
    weekdays: tuple[str, ...]
    periods: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _RoomSpec:
    suffix: str
    name: str
    features: tuple[str, ...]
    capacity: int


@dataclass(frozen=True)
class _CampusSpec:
    code: str
    name: str
    address: str
    bells: tuple[_BellSpec, ...]
    classes_per_grade: int
    class_size: tuple[int, int]
    home_room_capacity: int
    rooms: tuple[_RoomSpec, ...]


@dataclass(frozen=True)
class _SchoolSpec:
    name: str
    address: str
    campuses: tuple[_CampusSpec, ...]


@dataclass(frozen=True)
class _AllianceSpec:
    name: str
    kind: str
    schools: tuple[_SchoolSpec, ...]  # the first is the lead school


def _sync_room(capacity: int) -> _RoomSpec:
    return _RoomSpec("sync", "录播教室", ("sync",), capacity)


_WEEK = TEACHING_DAYS

COUNTY_SPEC: tuple[_AllianceSpec, ...] = (
    _AllianceSpec(
        GROUP_NAME,
        "group",
        (
            _SchoolSpec(
                "遂昌县实验小学",
                "浙江省丽水市遂昌县妙高街道",
                (
                    _CampusSpec(
                        "dj",
                        "东街校区",
                        "遂昌县妙高街道东街",
                        (
                            _BellSpec(
                                "东街校区常规作息",
                                ("tue", "wed", "thu", "fri"),
                                (
                                    ("08:00", "08:40"),
                                    ("08:50", "09:30"),
                                    # 大课间 09:30–09:55
                                    ("09:55", "10:35"),
                                    ("10:45", "11:25"),
                                    ("13:30", "14:10"),
                                    ("14:20", "15:00"),
                                    ("15:10", "15:50"),
                                ),
                            ),
                            _BellSpec(
                                "东街校区周一作息（升旗仪式）",
                                ("mon",),
                                (
                                    # 升旗仪式 08:00–08:20
                                    ("08:25", "09:05"),
                                    ("09:15", "09:55"),
                                    ("10:15", "10:55"),
                                    ("11:05", "11:45"),
                                    ("13:30", "14:10"),
                                    ("14:20", "15:00"),
                                    ("15:10", "15:50"),
                                ),
                            ),
                        ),
                        classes_per_grade=2,
                        class_size=(40, 45),
                        home_room_capacity=50,
                        rooms=(
                            _sync_room(50),
                            _RoomSpec("music", "音乐教室", ("music",), 50),
                            _RoomSpec("art", "美术教室", ("art",), 50),
                            _RoomSpec("computer", "计算机教室", ("computer",), 50),
                        ),
                    ),
                    _CampusSpec(
                        "hj",
                        "后江校区",
                        "遂昌县妙高街道后江",
                        (
                            _BellSpec(
                                "后江校区作息",
                                _WEEK,
                                (
                                    ("08:10", "08:50"),
                                    ("09:00", "09:40"),
                                    # 大课间 09:40–10:00
                                    ("10:00", "10:40"),
                                    ("10:50", "11:30"),
                                    ("13:35", "14:15"),
                                    ("14:25", "15:05"),
                                    ("15:15", "15:55"),
                                ),
                            ),
                        ),
                        classes_per_grade=1,
                        class_size=(40, 45),
                        home_room_capacity=50,
                        rooms=(
                            _sync_room(50),
                            _RoomSpec("music", "音乐教室", ("music",), 50),
                            _RoomSpec("computer", "计算机教室", ("computer",), 50),
                        ),
                    ),
                ),
            ),
        ),
    ),
    _AllianceSpec(
        RURAL_NAME,
        "alliance",
        (
            _SchoolSpec(
                "王村口小学",
                "浙江省丽水市遂昌县王村口镇",
                (
                    _CampusSpec(
                        "wck",
                        "王村口小学",
                        "遂昌县王村口镇",
                        (
                            _BellSpec(
                                "王村口小学作息",
                                _WEEK,
                                (
                                    ("08:20", "09:00"),
                                    ("09:10", "09:50"),
                                    # 大课间 09:50–10:15
                                    ("10:15", "10:55"),
                                    ("11:05", "11:45"),
                                    ("14:00", "14:40"),
                                    ("14:50", "15:30"),
                                ),
                            ),
                        ),
                        classes_per_grade=1,
                        class_size=(15, 20),
                        home_room_capacity=30,
                        rooms=(
                            _sync_room(40),
                            _RoomSpec("music", "音乐教室", ("music",), 30),
                            _RoomSpec("computer", "计算机教室", ("computer",), 30),
                        ),
                    ),
                ),
            ),
            _SchoolSpec(
                "蔡源小学",
                "浙江省丽水市遂昌县蔡源乡",
                (
                    _CampusSpec(
                        "cy",
                        "蔡源小学",
                        "遂昌县蔡源乡",
                        (
                            _BellSpec(
                                "蔡源小学作息",
                                _WEEK,
                                (
                                    ("08:30", "09:05"),
                                    ("09:15", "09:50"),
                                    # 大课间 09:50–10:15
                                    ("10:15", "10:50"),
                                    ("11:05", "11:40"),
                                    ("14:00", "14:35"),
                                    ("14:45", "15:20"),
                                ),
                            ),
                        ),
                        classes_per_grade=1,
                        class_size=(8, 14),
                        home_room_capacity=30,
                        rooms=(_sync_room(30),),
                    ),
                ),
            ),
            _SchoolSpec(
                "龙洋小学",
                "浙江省丽水市遂昌县龙洋乡",
                (
                    _CampusSpec(
                        "ly",
                        "龙洋小学",
                        "遂昌县龙洋乡",
                        (
                            _BellSpec(
                                "龙洋小学作息",
                                _WEEK,
                                (
                                    ("08:20", "09:00"),
                                    ("09:10", "09:50"),
                                    # 大课间 09:50–10:20
                                    ("10:20", "11:00"),
                                    ("11:10", "11:50"),
                                    ("14:00", "14:40"),
                                    ("14:50", "15:30"),
                                ),
                            ),
                        ),
                        classes_per_grade=1,
                        class_size=(8, 16),
                        home_room_capacity=30,
                        rooms=(_sync_room(30),),
                    ),
                ),
            ),
        ),
    ),
)

# Minutes by road; a pair's order does not matter.
TRAVEL_MINUTES: dict[tuple[str, str], int] = {
    ("dj", "hj"): 10,
    ("dj", "wck"): 70,
    ("hj", "wck"): 75,
    ("dj", "cy"): 50,
    ("hj", "cy"): 55,
    ("dj", "ly"): 60,
    ("hj", "ly"): 65,
    ("wck", "cy"): 25,
    ("wck", "ly"): 30,
    ("cy", "ly"): 45,
}

# (day, kind, follows_weekday, note)
CALENDAR: tuple[tuple[date, str, str | None, str], ...] = (
    (date(2026, 9, 25), "holiday", None, "中秋节"),
    (date(2026, 9, 27), "makeup", "wed", "国庆调休补课（按周三课表）"),
    *(
        (date(2026, 10, 1) + timedelta(days=offset), "holiday", None, "国庆节")
        for offset in range(7)
    ),
    (date(2026, 10, 10), "makeup", "thu", "国庆调休补课（按周四课表）"),
    (date(2027, 1, 1), "holiday", None, "元旦"),
)


# --------------------------------------------------------------------------- staffing


@dataclass(frozen=True)
class _ClassInfo:
    code: str
    campus: str
    level: int
    number: int


@dataclass
class _Post:
    """One teacher's job: the (class code, subject) pairs they teach."""

    home: str
    duties: list[tuple[str, str]]
    name: str | None = None
    is_backbone: bool = False
    is_subject_leader: bool = False
    username: str | None = None
    shows: str = ""


@dataclass(frozen=True)
class _SyncSpec:
    code: str
    kind: str
    subject: str
    lead_class: str
    member_classes: tuple[str, ...]


def _per_week(subject: str, level: int) -> int:
    return CURRICULUM[subject][level - 1]


def _pooled(home: str, classes: Sequence[_ClassInfo], subject: str, cap: int) -> list[_Post]:
    """Share one subject's classes out to teachers, each taking at most `cap` lessons a week."""
    posts: list[_Post] = []
    load = cap
    for info in sorted(classes, key=lambda c: (c.level, c.number)):
        weekly = _per_week(subject, info.level)
        if weekly == 0:
            continue
        if load + weekly > cap:
            posts.append(_Post(home, []))
            load = 0
        posts[-1].duties.append((info.code, subject))
        load += weekly
    return posts


def _class_teacher(info: _ClassInfo, subjects: Iterable[str]) -> _Post:
    return _Post(
        info.campus,
        [(info.code, s) for s in subjects if _per_week(s, info.level) > 0],
    )


def _group_posts(classes: Sequence[_ClassInfo]) -> list[_Post]:
    posts: list[_Post] = []
    for campus in ("dj", "hj"):
        mine = [c for c in classes if c.campus == campus]
        posts += [_class_teacher(c, ("语文", "道德与法治", "心理健康")) for c in mine]
        for subject, cap in (
            ("数学", 10),
            ("英语", 12),
            ("科学", 12),
            ("音乐", 16),
            ("美术", 16),
            ("体育", 16),
        ):
            posts += _pooled(campus, mine, subject, cap)
    # One IT teacher for both campuses: the 走教 between 东街 and 后江.
    posts += _pooled("dj", classes, "信息科技", 12)
    return posts


def _rural_posts(classes: Sequence[_ClassInfo]) -> list[_Post]:
    posts: list[_Post] = []
    for campus in ("wck", "cy", "ly"):
        mine = [c for c in classes if c.campus == campus]
        for info in mine:
            subjects = ["语文", "道德与法治", "心理健康"]
            if campus != "wck":
                # No art, English or music teacher: the class teacher teaches art and assists
                # the delivered English and music lessons.
                subjects.append("美术")
                if info.level >= 3:
                    subjects += ["英语", "音乐"]
            posts.append(_class_teacher(info, subjects))
        for pair in ((1, 2), (3, 4), (5, 6)):
            subjects = ["数学", "科学"] if campus == "wck" else ["数学", "科学", "信息科技"]
            posts.append(
                _Post(
                    campus,
                    [
                        (c.code, s)
                        for c in mine
                        if c.level in pair
                        for s in subjects
                        if _per_week(s, c.level) > 0
                    ],
                )
            )
        posts += _pooled(campus, mine, "体育", 24)
    wck = [c for c in classes if c.campus == "wck"]
    posts += _pooled("wck", wck, "英语", 12)
    posts.append(
        _Post(
            "wck",
            [(c.code, s) for c in wck for s in ("美术", "信息科技") if _per_week(s, c.level) > 0],
        )
    )
    # The music teacher teaches all of 王村口 and walks to 蔡源/龙洋 for grades 1–2 (走教);
    # grades 3–6 there follow her 王村口 lessons live (专递课堂).
    posts.append(
        _Post(
            "wck",
            [(c.code, "音乐") for c in wck]
            + [(c.code, "音乐") for c in classes if c.campus != "wck" and c.level <= 2],
        )
    )
    return posts


def _assign(
    posts: list[_Post],
    duty: tuple[str, str],
    *,
    name: str,
    username: str,
    shows: str,
    backbone: bool = False,
    leader: bool = False,
) -> None:
    for post in posts:
        if duty in post.duties:
            post.name = name
            post.username = username
            post.shows = shows
            post.is_backbone = post.is_backbone or backbone
            post.is_subject_leader = post.is_subject_leader or leader
            return
    raise LookupError(f"no post teaches {duty}")


def _named_posts(group: list[_Post], rural: list[_Post]) -> None:
    _assign(
        group,
        ("dj-4-1", "数学"),
        name="叶建平",
        username="teacher-ye",
        shows="东街→后江 四年级数学同步课堂的主讲教师（学科带头人）",
        backbone=True,
        leader=True,
    )
    _assign(
        group,
        ("hj-4-3", "数学"),
        name="吴志强",
        username="teacher-wu",
        shows="后江校区四(3)班数学：同步课堂的辅助教师",
    )
    _assign(
        group,
        ("dj-3-1", "信息科技"),
        name="毛俊",
        username="teacher-mao",
        shows="信息科技教师，东街、后江两校区走教",
    )
    _assign(
        rural,
        ("wck-4-1", "英语"),
        name="王丽娟",
        username="teacher-wang",
        shows="王村口小学英语骨干教师：向蔡源、龙洋专递英语课",
        backbone=True,
        leader=True,
    )
    _assign(
        rural,
        ("wck-4-1", "音乐"),
        name="雷晓芬",
        username="teacher-lei",
        shows="王村口小学音乐教师：专递音乐课，并到蔡源、龙洋走教",
        backbone=True,
    )
    _assign(
        rural,
        ("cy-4-1", "语文"),
        name="蓝美玲",
        username="teacher-lan",
        shows="蔡源小学四(1)班班主任：专递英语、音乐课的辅助教师",
    )


def _sync_specs() -> list[_SyncSpec]:
    specs = [_SyncSpec("dj-ma-4", "sync", "数学", "dj-4-1", ("hj-4-3",))]
    for level in range(3, 7):
        for subject, short in (("英语", "en"), ("音乐", "mu")):
            specs.append(
                _SyncSpec(
                    f"wck-{short}-{level}",
                    "delivered",
                    subject,
                    f"wck-{level}-1",
                    (f"cy-{level}-1", f"ly-{level}-1"),
                )
            )
    return specs


# --------------------------------------------------------------------------- names

_SURNAMES = (
    "毛叶吴周朱郑蓝雷钟王李张陈刘黄徐华罗翁潘应傅曾林程何谢尹范赖蒋郭邱包项巫杨金"
    "王叶毛吴周郑朱李张陈刘"  # the county's most common surnames twice as often
)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_TEACHER_GIVEN = _words(
    "建平 丽娟 志强 晓燕 海燕 伟 军 芳 敏 静 丽 红霞 美玲 建华 国平 晓东 卫东 雅琴 素芳 慧 "
    "婷婷 佳 晨 倩 雪梅 春燕 小芬 丽萍 建军 志华 永红 玉兰 秀英 文斌 立新 俊杰 振华 亚男 "
    "燕飞 晓丽 莉 蕾 洁 颖 琳 霞 宏伟 海峰 剑锋 利民 一鸣 思远 梦婷 诗琪 佳怡 雨婷 晓峰 "
    "忠良 金燕 爱华 丽君 秋萍 月英 巧玲 伟民 少华 国庆 鸿飞"
)
_STUDENT_GIVEN = _words(
    "子涵 梓涵 一诺 欣怡 浩宇 宇轩 梓轩 诗涵 语桐 若汐 沐阳 俊熙 思彤 雨泽 皓轩 可馨 芷若 "
    "子墨 奕辰 锦程 嘉怡 佳琪 铭泽 明轩 睿 辰 依依 乐瑶 梓萌 昕怡 梓睿 宇航 天佑 博文 星辰 "
    "雨萱 紫萱 思琪 雅琪 晨曦 俊宇 泽宇 煜城 安琪 语嫣 沐晨 子轩 梓豪 欣妍 瑾萱 若曦 书瑶 "
    "浩然 子豪 宸 景行 知远 一凡 嘉乐 诗雨 梦瑶 思源 家豪 晟 哲 悦 彤 逸飞 承泽 安然 可欣"
)


class _Names:
    """Deterministic, unique-within-a-scope Chinese names."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: dict[str, set[str]] = defaultdict(set)

    def reserve(self, scope: str, name: str) -> None:
        self._used[scope].add(name)

    def pick(self, scope: str, given: Sequence[str]) -> str:
        used = self._used[scope]
        while True:
            name = self._rng.choice(_SURNAMES) + self._rng.choice(given)
            if name not in used:
                used.add(name)
                return name


# --------------------------------------------------------------------------- timetable placer


def _minutes(moment: time) -> int:
    return moment.hour * 60 + moment.minute


# campus id -> day -> period number -> (start, end) in minutes since midnight
Clock = dict[int, dict[str, dict[int, tuple[int, int]]]]


def campus_clock(
    campus: Campus, days: Sequence[str] = TEACHING_DAYS
) -> dict[str, dict[int, tuple[int, int]]]:
    """Each day's periods of a campus as wall-clock minutes, from the bell schedule for that day."""
    clock: dict[str, dict[int, tuple[int, int]]] = {}
    for day in days:
        schedule = next((b for b in campus.bell_schedules if day in b.weekdays), None)
        if schedule is None:
            raise LookupError(f"{campus.name} 没有 {day} 的作息时间")
        clock[day] = {
            p.number: (_minutes(p.start_time), _minutes(p.end_time)) for p in schedule.periods
        }
    return clock


@dataclass(frozen=True)
class _PlanLesson:
    id: int
    class_id: int
    campus_id: int
    teacher_id: int
    per_week: int
    max_per_day: int
    prefer_morning: bool
    rooms: tuple[int, ...]  # rooms it may use, in order of preference


@dataclass(frozen=True)
class _Placement:
    lesson_id: int
    day: str
    period: int
    room_id: int


@dataclass
class _Placer:
    """Greedy weekly placement: sync groups first at matching wall-clock slots, then the rest."""

    clock: Clock
    travel: dict[frozenset[int], int]
    rng: random.Random
    placements: list[_Placement] = field(default_factory=list)
    _class_busy: set[tuple[int, str, int]] = field(default_factory=set)
    _room_busy: set[tuple[int, str, int]] = field(default_factory=set)
    _teacher_busy: dict[tuple[int, str], list[tuple[int, int, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _per_day: Counter[tuple[int, str]] = field(default_factory=Counter)
    _class_load: Counter[tuple[int, str]] = field(default_factory=Counter)

    def _teacher_free(self, teacher: int, campus: int, day: str, start: int, end: int) -> bool:
        for busy_start, busy_end, busy_campus in self._teacher_busy[(teacher, day)]:
            if busy_campus == campus:
                gap = 0
            else:
                travel = self.travel.get(frozenset((campus, busy_campus)))
                if travel is None:
                    return False
                gap = travel
            if start < busy_end + gap and busy_start < end + gap:
                return False
        return True

    def room_for(self, lesson: _PlanLesson, day: str, period: int) -> int | None:
        """A free room if the lesson can take place at (day, period), else None."""
        if (lesson.class_id, day, period) in self._class_busy:
            return None
        if self._per_day[(lesson.id, day)] >= lesson.max_per_day:
            return None
        start, end = self.clock[lesson.campus_id][day][period]
        if not self._teacher_free(lesson.teacher_id, lesson.campus_id, day, start, end):
            return None
        return next((r for r in lesson.rooms if (r, day, period) not in self._room_busy), None)

    def _put(self, lesson: _PlanLesson, day: str, period: int, room: int) -> None:
        start, end = self.clock[lesson.campus_id][day][period]
        self._class_busy.add((lesson.class_id, day, period))
        self._room_busy.add((room, day, period))
        self._teacher_busy[(lesson.teacher_id, day)].append((start, end, lesson.campus_id))
        self._per_day[(lesson.id, day)] += 1
        self._class_load[(lesson.class_id, day)] += 1
        self.placements.append(_Placement(lesson.id, day, period, room))

    def _score(self, lesson: _PlanLesson, day: str, period: int) -> tuple[float, ...]:
        start = self.clock[lesson.campus_id][day][period][0]
        return (
            self._per_day[(lesson.id, day)],
            1 if lesson.prefer_morning and start >= 12 * 60 else 0,
            self._class_load[(lesson.class_id, day)],
            period,
            self.rng.random(),
        )

    def place(self, lesson: _PlanLesson) -> bool:
        for _ in range(lesson.per_week):
            options = [
                (self._score(lesson, day, period), day, period, room)
                for day in TEACHING_DAYS
                for period in self.clock[lesson.campus_id][day]
                if (room := self.room_for(lesson, day, period)) is not None
            ]
            if not options:
                return False
            _, day, period, room = min(options)
            self._put(lesson, day, period, room)
        return True

    def place_sync(self, lead: _PlanLesson, members: Sequence[_PlanLesson]) -> bool:
        for _ in range(lead.per_week):
            options: list[tuple[tuple[float, ...], str, list[tuple[_PlanLesson, int, int]]]] = []
            for day in TEACHING_DAYS:
                for period, (start, _end) in self.clock[lead.campus_id][day].items():
                    room = self.room_for(lead, day, period)
                    if room is None:
                        continue
                    picks = [(lead, period, room)]
                    starts = [start]
                    for member in members:
                        pick = self._member_slot(member, day, starts)
                        if pick is None:
                            break
                        picks.append((member, pick[0], pick[1]))
                        starts.append(self.clock[member.campus_id][day][pick[0]][0])
                    else:
                        options.append((self._score(lead, day, period), day, picks))
            if not options:
                return False
            _, day, picks = min(options, key=lambda option: option[0])
            for lesson, period, room in picks:
                self._put(lesson, day, period, room)
        return True

    def _member_slot(
        self, member: _PlanLesson, day: str, starts: Sequence[int]
    ) -> tuple[int, int] | None:
        for period, (start, _end) in self.clock[member.campus_id][day].items():
            if all(abs(start - other) <= SYNC_TOLERANCE_MINUTES for other in starts):
                room = self.room_for(member, day, period)
                if room is not None:
                    return period, room
        return None


def _place_week(
    lessons: dict[int, _PlanLesson],
    groups: Sequence[tuple[int, Sequence[int]]],
    clock: Clock,
    travel: dict[frozenset[int], int],
) -> list[_Placement]:
    """A consistent week for every lesson; retries the greedy with other tie-breaks if stuck."""
    in_group = {lead for lead, _ in groups} | {m for _, members in groups for m in members}
    teacher_load: Counter[int] = Counter()
    teacher_campuses: dict[int, set[int]] = defaultdict(set)
    teacher_classes: dict[int, set[int]] = defaultdict(set)
    for lesson in lessons.values():
        teacher_load[lesson.teacher_id] += lesson.per_week
        teacher_campuses[lesson.teacher_id].add(lesson.campus_id)
        teacher_classes[lesson.teacher_id].add(lesson.class_id)
    for attempt in range(_PLACEMENT_ATTEMPTS):
        rng = random.Random(SEED * 1000 + attempt)
        placer = _Placer(clock, travel, rng)
        ordered_groups = sorted(groups, key=lambda g: (-len(g[1]), rng.random()))
        if not all(
            placer.place_sync(lessons[lead], [lessons[m] for m in members])
            for lead, members in ordered_groups
        ):
            continue
        # Hardest first: itinerant teachers, then teachers shared by classes, then the rest.
        rest = sorted(
            (lesson for lesson in lessons.values() if lesson.id not in in_group),
            key=lambda lesson: (
                -len(teacher_campuses[lesson.teacher_id]),
                len(teacher_classes[lesson.teacher_id]) == 1,
                -teacher_load[lesson.teacher_id],
                lesson.teacher_id,
                -lesson.per_week,
                rng.random(),
            ),
        )
        if all(placer.place(lesson) for lesson in rest):
            logger.debug("demo timetable placed", extra={"attempt": attempt})
            return placer.placements
    raise RuntimeError("演示课表排不出来：贪心排课在所有尝试中都失败了")


def _check_week(
    lessons: dict[int, _PlanLesson],
    groups: Sequence[tuple[int, Sequence[int]]],
    placements: Sequence[_Placement],
    clock: Clock,
    travel: dict[frozenset[int], int],
) -> None:
    """Raise if the week double-books a class, room or teacher, or breaks a sync group."""
    problems: list[str] = []
    seen_class: set[tuple[int, str, int]] = set()
    seen_room: set[tuple[int, str, int]] = set()
    count: Counter[int] = Counter()
    teacher_day: dict[tuple[int, str], list[tuple[int, int, int]]] = defaultdict(list)
    by_lesson_day: dict[tuple[int, str], list[int]] = defaultdict(list)
    for p in placements:
        lesson = lessons[p.lesson_id]
        count[p.lesson_id] += 1
        if (lesson.class_id, p.day, p.period) in seen_class:
            problems.append(f"class {lesson.class_id} twice at {p.day} {p.period}")
        seen_class.add((lesson.class_id, p.day, p.period))
        if (p.room_id, p.day, p.period) in seen_room:
            problems.append(f"room {p.room_id} twice at {p.day} {p.period}")
        seen_room.add((p.room_id, p.day, p.period))
        if p.room_id not in lesson.rooms:
            problems.append(f"lesson {lesson.id} in room {p.room_id}")
        start, end = clock[lesson.campus_id][p.day][p.period]
        teacher_day[(lesson.teacher_id, p.day)].append((start, end, lesson.campus_id))
        by_lesson_day[(p.lesson_id, p.day)].append(start)
    for lesson in lessons.values():
        if count[lesson.id] != lesson.per_week:
            problems.append(f"lesson {lesson.id}: {count[lesson.id]} of {lesson.per_week}")
    for (teacher, day), intervals in teacher_day.items():
        intervals.sort()
        for (_s1, e1, c1), (s2, _e2, c2) in pairwise(intervals):
            gap = 0 if c1 == c2 else travel.get(frozenset((c1, c2)))
            if gap is None or e1 + gap > s2:
                problems.append(f"teacher {teacher} double-booked on {day}")
    for lead, members in groups:
        for day in TEACHING_DAYS:
            lead_starts = sorted(by_lesson_day.get((lead, day), []))
            for member in members:
                member_starts = sorted(by_lesson_day.get((member, day), []))
                if len(member_starts) != len(lead_starts) or any(
                    abs(a - b) > SYNC_TOLERANCE_MINUTES
                    for a, b in zip(lead_starts, member_starts, strict=True)
                ):
                    problems.append(f"sync lesson {member} not with lead {lead} on {day}")
    if problems:
        raise RuntimeError("演示课表不一致：" + "; ".join(problems[:10]))


# --------------------------------------------------------------------------- seeding


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _class_name(level: int, number: int) -> str:
    return f"{_GRADE_DIGITS[level]}({number})班"


def _check_empty(session: Session) -> None:
    if session.scalar(select(Alliance.id).where(Alliance.name.in_(DEMO_ALLIANCES))) is not None:
        raise ConflictError("演示数据已存在")
    codes = [c.code for a in COUNTY_SPEC for s in a.schools for c in s.campuses]
    taken = session.scalars(select(Campus.code).where(Campus.code.in_(codes))).all()
    if taken:
        raise ConflictError("演示数据的校区代码已被占用", detail={"codes": list(taken)})
    usernames = ("bureau", "admin-sy", "admin-wck", "principal-dj", "principal-cy")
    clash = session.scalars(select(Account.username).where(Account.username.in_(usernames))).all()
    if clash:
        raise ConflictError("演示账号已存在", detail={"usernames": list(clash)})


def seed_demo(session: Session, *, password: str = "tongke-demo") -> DemoSummary:
    """Seed the demo county into an empty database, in the caller's transaction (flush only).

    Raises ConflictError("演示数据已存在") when the demo alliances are already there.
    """
    check_password_strength(password)
    _check_empty(session)
    rng = random.Random(SEED)
    names = _Names(rng)

    # -- alliances, schools, campuses, bells, rooms
    alliances: dict[str, Alliance] = {}
    schools: dict[str, School] = {}  # by name
    campuses: dict[str, Campus] = {}  # by code
    school_of_campus: dict[str, School] = {}
    alliance_of_campus: dict[str, Alliance] = {}
    rooms: dict[str, Room] = {}  # by code
    for a_spec in COUNTY_SPEC:
        alliance = Alliance(name=a_spec.name, kind=a_spec.kind, county=COUNTY)
        session.add(alliance)
        alliances[a_spec.name] = alliance
        for s_spec in a_spec.schools:
            school = School(alliance=alliance, name=s_spec.name, address=s_spec.address)
            session.add(school)
            schools[s_spec.name] = school
            for c_spec in s_spec.campuses:
                campus = Campus(
                    school=school, code=c_spec.code, name=c_spec.name, address=c_spec.address
                )
                for bell in c_spec.bells:
                    campus.bell_schedules.append(
                        BellSchedule(
                            name=bell.name,
                            weekdays=list(bell.weekdays),
                            periods=[
                                Period(number=n, start_time=_hhmm(s), end_time=_hhmm(e))
                                for n, (s, e) in enumerate(bell.periods, start=1)
                            ],
                        )
                    )
                session.add(campus)
                campuses[c_spec.code] = campus
                school_of_campus[c_spec.code] = school
                alliance_of_campus[c_spec.code] = alliance
                for r_spec in c_spec.rooms:
                    room = Room(
                        campus=campus,
                        code=f"{c_spec.code}-{r_spec.suffix}",
                        name=r_spec.name,
                        capacity=r_spec.capacity,
                        features=list(r_spec.features),
                    )
                    if "sync" in r_spec.features:
                        room.terminal = ClassroomTerminal(name=f"{c_spec.name}录播教室终端")
                    session.add(room)
                    rooms[room.code] = room
    session.flush()
    for a_spec in COUNTY_SPEC:
        alliances[a_spec.name].lead_school_id = schools[a_spec.schools[0].name].id

    for (a, b), minutes in TRAVEL_MINUTES.items():
        first, second = sorted((campuses[a].id, campuses[b].id))
        session.add(TravelTime(campus_a_id=first, campus_b_id=second, minutes=minutes))

    # -- terms and 校历
    terms: dict[str, Term] = {}
    for name, alliance in alliances.items():
        term = Term(
            alliance_id=alliance.id,
            name=TERM_NAME,
            start_date=date(2026, 9, 1),
            end_date=date(2027, 1, 22),
            is_current=True,
            calendar_days=[
                CalendarDay(day=day, kind=kind, follows_weekday=follows, note=note)
                for day, kind, follows, note in CALENDAR
            ],
        )
        session.add(term)
        terms[name] = term

    # -- subjects per alliance
    subjects: dict[tuple[str, str], Subject] = {}
    for name, alliance in alliances.items():
        for subject_name, is_main, is_scarce in SUBJECTS:
            subject = Subject(
                alliance_id=alliance.id, name=subject_name, is_main=is_main, is_scarce=is_scarce
            )
            session.add(subject)
            subjects[(name, subject_name)] = subject

    # -- grades, classes with home rooms
    classes: dict[str, SchoolClass] = {}
    infos: dict[str, list[_ClassInfo]] = defaultdict(list)  # by alliance name
    for a_spec in COUNTY_SPEC:
        for s_spec in a_spec.schools:
            school = schools[s_spec.name]
            for level in range(1, 7):
                grade = Grade(school_id=school.id, level=level, name=grade_name(level))
                session.add(grade)
                number = 0
                for c_spec in s_spec.campuses:
                    campus = campuses[c_spec.code]
                    for _ in range(c_spec.classes_per_grade):
                        number += 1
                        code = f"{c_spec.code}-{level}-{number}"
                        label = _class_name(level, number)
                        home = Room(
                            campus=campus,
                            code=f"{c_spec.code}-{level}{number:02d}",
                            name=f"{label}教室",
                            capacity=c_spec.home_room_capacity,
                        )
                        session.add(home)
                        rooms[home.code] = home
                        school_class = SchoolClass(
                            school_id=school.id,
                            campus=campus,
                            grade=grade,
                            code=code,
                            name=label,
                            size=rng.randint(*c_spec.class_size),
                            home_room=home,
                        )
                        session.add(school_class)
                        classes[code] = school_class
                        infos[a_spec.name].append(_ClassInfo(code, c_spec.code, level, number))

    # -- teachers
    posts_by_alliance = {
        GROUP_NAME: _group_posts(infos[GROUP_NAME]),
        RURAL_NAME: _rural_posts(infos[RURAL_NAME]),
    }
    _named_posts(posts_by_alliance[GROUP_NAME], posts_by_alliance[RURAL_NAME])
    for posts in posts_by_alliance.values():
        for post in posts:
            if post.name:
                names.reserve("teachers", post.name)
    teacher_codes: Counter[str] = Counter()
    teachers: dict[tuple[str, str], Teacher] = {}  # (class code, subject) -> teacher
    login_teachers: list[tuple[_Post, Teacher]] = []
    for alliance_name, posts in posts_by_alliance.items():
        covered = Counter(duty for post in posts for duty in post.duties)
        expected = {
            (info.code, subject)
            for info in infos[alliance_name]
            for subject in CURRICULUM
            if _per_week(subject, info.level) > 0
        }
        if set(covered) != expected or any(n != 1 for n in covered.values()):
            raise RuntimeError(f"{alliance_name} 的任课安排不完整")
        for post in posts:
            teacher_codes[post.home] += 1
            teacher = Teacher(
                school_id=school_of_campus[post.home].id,
                home_campus_id=campuses[post.home].id,
                code=f"t-{post.home}-{teacher_codes[post.home]:03d}",
                name=post.name or names.pick("teachers", _TEACHER_GIVEN),
                # A few more 骨干教师 besides the named sync leads.
                is_backbone=post.is_backbone or rng.random() < 0.12,
                is_subject_leader=post.is_subject_leader,
            )
            taught = list(dict.fromkeys(subject for _, subject in post.duties))
            teacher.subjects = [subjects[(alliance_name, s)] for s in taught]
            away = dict.fromkeys(classes[code].campus.code for code, _ in post.duties).keys() - {
                post.home
            }
            teacher.campuses = [campuses[code] for code in sorted(away)]
            session.add(teacher)
            for duty in post.duties:
                teachers[duty] = teacher
            if post.username:
                login_teachers.append((post, teacher))

    # -- students
    students_by_class: dict[str, list[Student]] = {}
    for code, school_class in classes.items():
        level = int(code.split("-")[1])
        number = int(code.split("-")[2])
        scope = f"class:{code}"
        roster = [
            Student(
                school_class=school_class,
                student_no=f"{2027 - level}{number:02d}{i:02d}",
                name=names.pick(scope, _STUDENT_GIVEN),
            )
            for i in range(1, school_class.size + 1)
        ]
        session.add_all(roster)
        students_by_class[code] = roster
    session.flush()

    # -- lessons
    sync_specs = _sync_specs()
    in_sync = {
        (code, spec.subject)
        for spec in sync_specs
        for code in (spec.lead_class, *spec.member_classes)
    }
    lessons: dict[tuple[str, str], Lesson] = {}
    plan: dict[int, _PlanLesson] = {}
    rooms_by_campus: dict[str, list[Room]] = defaultdict(list)
    for room in rooms.values():
        rooms_by_campus[room.campus.code].append(room)
    for (code, subject_name), teacher in teachers.items():
        school_class = classes[code]
        campus_code = school_class.campus.code
        alliance = alliance_of_campus[campus_code]
        level = int(code.split("-")[1])
        weekly = _per_week(subject_name, level)
        features: list[str] = []
        if (code, subject_name) in in_sync:
            features = ["sync"]
        elif subject_name in SUBJECT_ROOM_FEATURE and any(
            SUBJECT_ROOM_FEATURE[subject_name] in r.features for r in rooms_by_campus[campus_code]
        ):
            features = [SUBJECT_ROOM_FEATURE[subject_name]]
        subject = subjects[(alliance.name, subject_name)]
        lesson = Lesson(
            term_id=terms[alliance.name].id,
            class_id=school_class.id,
            subject_id=subject.id,
            teacher_id=teacher.id,
            per_week=weekly,
            max_per_day=1 if weekly <= len(TEACHING_DAYS) else math.ceil(weekly / 5),
            prefer_morning=subject.is_main,
            room_features=features,
        )
        session.add(lesson)
        lessons[(code, subject_name)] = lesson
    session.flush()
    for (code, _subject_name), lesson in lessons.items():
        school_class = classes[code]
        if lesson.room_features:
            candidates = tuple(
                r.id
                for r in sorted(rooms_by_campus[school_class.campus.code], key=lambda r: r.code)
                if set(lesson.room_features) <= set(r.features) and r.capacity >= school_class.size
            )
        else:
            assert school_class.home_room is not None
            candidates = (school_class.home_room.id,)
        if not candidates:
            raise RuntimeError(f"{code} 没有合适的教室上 {lesson.room_features}")
        plan[lesson.id] = _PlanLesson(
            id=lesson.id,
            class_id=school_class.id,
            campus_id=school_class.campus_id,
            teacher_id=lesson.teacher_id,
            per_week=lesson.per_week,
            max_per_day=lesson.max_per_day or 1,
            prefer_morning=lesson.prefer_morning,
            rooms=candidates,
        )

    # -- sync groups
    group_plan: list[tuple[int, tuple[int, ...]]] = []
    for spec in sync_specs:
        lead = lessons[(spec.lead_class, spec.subject)]
        alliance = alliance_of_campus[classes[spec.lead_class].campus.code]
        group = SyncGroup(
            term_id=terms[alliance.name].id,
            code=spec.code,
            kind=spec.kind,
            lead_lesson_id=lead.id,
            members=[
                SyncGroupMember(lesson_id=lessons[(code, spec.subject)].id)
                for code in spec.member_classes
            ],
        )
        session.add(group)
        group_plan.append(
            (lead.id, tuple(lessons[(code, spec.subject)].id for code in spec.member_classes))
        )

    # -- the week
    clock: Clock = {campus.id: campus_clock(campus) for campus in campuses.values()}
    travel = {
        frozenset((campuses[a].id, campuses[b].id)): minutes
        for (a, b), minutes in TRAVEL_MINUTES.items()
    }
    placements = _place_week(plan, group_plan, clock, travel)
    _check_week(plan, group_plan, placements, clock, travel)
    term_of_lesson = {lesson.id: lesson.term_id for lesson in lessons.values()}
    session.add_all(
        TimetableEntry(
            term_id=term_of_lesson[p.lesson_id],
            lesson_id=p.lesson_id,
            day=p.day,
            period=p.period,
            room_id=p.room_id,
        )
        for p in placements
    )
    session.flush()

    logins = _create_logins(
        session,
        password=password,
        alliances=alliances,
        schools=schools,
        campuses=campuses,
        rooms=rooms,
        classes=classes,
        students_by_class=students_by_class,
        login_teachers=login_teachers,
    )
    # 演示历史 (demo only): invented past lesson runs, so the demo's dashboard is not empty.
    from research.demo_history import seed_lesson_history

    seed_lesson_history(session)
    summary = DemoSummary(
        alliances=DEMO_ALLIANCES,
        logins=tuple(logins),
        schools=len(schools),
        campuses=len(campuses),
        classes=len(classes),
        teachers=len({t.id for t in teachers.values()}),
        students=sum(len(roster) for roster in students_by_class.values()),
        rooms=len(rooms),
        lessons=len(lessons),
        sync_groups=len(sync_specs),
        timetable_entries=len(placements),
    )
    logger.info(
        "demo county seeded",
        extra={
            "alliances": len(alliances),
            "students": summary.students,
            "timetable_entries": summary.timetable_entries,
        },
    )
    return summary


class _Scope(TypedDict, total=False):
    alliance_id: int
    school_id: int
    class_id: int
    teacher_id: int
    student_id: int


def _create_logins(
    session: Session,
    *,
    password: str,
    alliances: dict[str, Alliance],
    schools: dict[str, School],
    campuses: dict[str, Campus],
    rooms: dict[str, Room],
    classes: dict[str, SchoolClass],
    students_by_class: dict[str, list[Student]],
    login_teachers: Sequence[tuple[_Post, Teacher]],
) -> list[DemoLogin]:
    group, rural = alliances[GROUP_NAME], alliances[RURAL_NAME]
    town, cy = schools["遂昌县实验小学"], schools["蔡源小学"]
    alliance_of_school = {school.id: school.alliance_id for school in schools.values()}
    people: list[tuple[DemoLogin, _Scope]] = [
        (
            DemoLogin("bureau", "bureau", "教育局 周建国", "全县两个教联体的总览、线上巡课"),
            {},
        ),
        (
            DemoLogin(
                "admin-sy",
                "alliance_admin",
                "集团总校长 徐卫东",
                f"{GROUP_NAME}：两校区的课表与同步课堂",
            ),
            {"alliance_id": group.id},
        ),
        (
            DemoLogin(
                "admin-wck",
                "alliance_admin",
                "联盟总校长 潘志明",
                f"{RURAL_NAME}：三所学校的专递课堂与走教",
            ),
            {"alliance_id": rural.id},
        ),
        (
            DemoLogin(
                "principal-dj", "school_admin", "执行校长 华丽萍", "遂昌县实验小学东街、后江两校区"
            ),
            {"alliance_id": group.id, "school_id": town.id},
        ),
        (
            DemoLogin(
                "principal-cy",
                "school_admin",
                "执行校长 钟海军",
                "蔡源小学：接收专递课堂的小规模学校",
            ),
            {"alliance_id": rural.id, "school_id": cy.id},
        ),
    ]
    for post, teacher in login_teachers:
        assert post.username is not None
        people.append(
            (
                DemoLogin(post.username, "teacher", teacher.name, post.shows),
                {
                    "alliance_id": alliance_of_school[teacher.school_id],
                    "school_id": teacher.school_id,
                    "teacher_id": teacher.id,
                },
            )
        )
    for code, alliance, school in (("cy-4-1", rural, cy), ("dj-4-1", group, town)):
        student = students_by_class[code][0]
        school_class = classes[code]
        people.append(
            (
                DemoLogin(
                    f"student-{code}",
                    "student",
                    student.name,
                    f"{school.name}{school_class.name}学生的课表（含同步/专递课堂）",
                ),
                {
                    "alliance_id": alliance.id,
                    "school_id": school.id,
                    "class_id": school_class.id,
                    "student_id": student.id,
                },
            )
        )
    # One argon2 hash (~0.1 s each) for every demo person: they share the password anyway.
    password_hash = hash_password(password)
    logins: list[DemoLogin] = []
    for login, scope in people:
        account = create_account(
            session,
            username=login.username,
            display_name=login.display_name,
            role=login.role,
            **scope,
        )
        account.password_hash = password_hash
        logins.append(login)
    for code, campus in campuses.items():
        room = rooms[f"{code}-sync"]
        assert room.terminal is not None
        school = campus.school
        login = DemoLogin(
            f"terminal-{code}-sync",
            "terminal",
            room.terminal.name,
            f"{campus.name}录播教室的班班通：配对后自动进入同步课堂",
            uses_password=False,
        )
        create_account(
            session,
            username=login.username,
            display_name=login.display_name,
            role="terminal",
            alliance_id=school.alliance_id,
            school_id=school.id,
            terminal_id=room.terminal.id,
        )
        logins.append(login)
    return logins
