"""听评课 in the replay player, in Debian's Chromium against `tongke demo`.

A lesson recorded by the demo's 王村口 English 专递课堂 is processed the way the job does it
(real ffmpeg, chapters from the lesson's events); a teacher opens the replay, jumps to a
chapter, adds a comment at that moment and sees its marker on the timeline, replies, scores
the lesson and comes back where she stopped; a pupil of 蔡源 4(1), to whose class the lesson is
shown, gets the same player without any comment. Screenshots: test-artifacts/screenshots/
replay-*.png. Run it in a loopback-only network namespace like the other journeys.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, expect, sync_playwright
from sqlalchemy import select

from common.accounts.models import Account
from common.db import make_engine, session_factory
from recordings import service as recordings
from recordings.bench_composition import make_meeting
from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline
from recordings.meetings import new_recording_for_research_session, publish_preview
from recordings.models import Recording
from recordings.processing import make_playable, process_recording
from research.models import ResearchSession
from tests.e2e.demo_process import running_demo
from tests.e2e.test_ui_journeys import CHROMIUM, CHROMIUM_ARGS, Tab

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg"),
    pytest.mark.timeout(240),
]

WCK_EN_4 = 4  # 王丽娟's English for 王村口 4(1), delivered to 蔡源 4(1) and 龙洋 4(1)
LESSON_S = 8
MEETING_S = 15.0
CHUNK_S = 60.0
HAND_AT_S = 3.0


@dataclass(frozen=True)
class Replay:
    base: str
    recording_id: int
    raw_only_id: int  # playable from its WebM, HLS not made yet
    meeting_id: int  # a 教研 meeting on its preview, the composition not run yet
    root: Path  # the demo's database and media root


def _record_lesson(root: Path, *, renditions: bool = True) -> int:
    """A processed recording in the demo's database and media root, as the job leaves it (or,
    without ``renditions``, as it is between its two steps: playable, HLS still to come)."""
    media_root = root / "media"
    engine = make_engine(f"sqlite:///{root / 'demo.db'}")
    sessions = session_factory(engine)
    try:
        with sessions() as session:
            recording = recordings.new_recording_for_sync_group(session, sync_group_id=WCK_EN_4)
            recording.topic = "Unit 3 My friends"
            recording.status = "processing"
            session.commit()
            recording_id, raw = recording.id, media_root / recording.raw_path
        raw.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ffmpeg", "-v", "error", "-y",
                "-f", "lavfi", "-i", f"testsrc=size=320x180:rate=15:duration={LESSON_S}",
                "-f", "lavfi", "-i", f"sine=f=440:r=48000:duration={LESSON_S}",
                "-c:v", "libvpx", "-b:v", "200k", "-c:a", "libopus", str(raw),
            ],
            check=True,
        )  # fmt: skip
        events = {"events": [{"t": HAND_AT_S, "kind": "hand_raised", "participant": "蔡源"}]}
        raw.with_name("events.json").write_text(json.dumps(events, ensure_ascii=False), "utf-8")
        # Playwright's sync API may own this thread's event loop: process on another thread.
        with ThreadPoolExecutor(max_workers=1) as worker:
            if renditions:
                worker.submit(
                    asyncio.run,
                    process_recording(sessions, media_root=media_root, recording_id=recording_id),
                ).result()
            else:
                _, outputs = worker.submit(
                    asyncio.run, make_playable(raw, out_dir=raw.parent)
                ).result()
                with sessions() as session:
                    recording = session.get_one(Recording, recording_id)
                    recording.status = "ready"
                    recording.outputs = {**outputs, "renditions": "processing"}
                    session.commit()
    finally:
        engine.dispose()
    return recording_id


def _record_meeting(root: Path) -> int:
    """A 教研 meeting hosted by 王丽娟, as its recording is right after the stop: the
    teachers' files (made as the capture makes them), the preview made from them and the
    recording ready on it (``publish_preview``), the composition still to run."""
    engine = make_engine(f"sqlite:///{root / 'demo.db'}")
    sessions = session_factory(engine)
    try:
        with sessions() as session, session.begin():
            wang = session.scalars(select(Account).where(Account.username == "teacher-wang")).one()
            row = session.scalars(select(ResearchSession).order_by(ResearchSession.id)).first()
            assert row is not None and wang.teacher_id is not None
            row.host_id = wang.teacher_id  # hers to manage: she may have it composed again
            recording = new_recording_for_research_session(session, research_session_id=row.id)
            recording.status = "processing"
            recording_id, folder = recording.id, (root / "media" / recording.raw_path).parent
        make_meeting(folder, minutes=MEETING_S / 60, participants=2, turn_s=5, size="320x180")
        timeline = MeetingTimeline.read(folder / TIMELINE_NAME)
        with ThreadPoolExecutor(max_workers=1) as worker:
            worker.submit(
                asyncio.run,
                publish_preview(
                    sessions,
                    recording_id=recording_id,
                    folder=folder,
                    timeline=timeline,
                    chunk_s=CHUNK_S,
                ),
            ).result()
    finally:
        engine.dispose()
    return recording_id


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    root = tmp_path_factory.mktemp("replay-demo")
    with running_demo(root) as demo:
        raw_only = _record_lesson(root, renditions=False)  # older: listed second
        yield Replay(demo.base, _record_lesson(root), raw_only, _record_meeting(root), root)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def tabs(browser: Browser, replay: Replay) -> Iterator[list[Tab]]:
    opened: list[Tab] = []
    yield opened
    for tab in opened:
        errors = list(tab.errors)
        tab.context.close()
        assert errors == [], f"console errors: {errors}"


def open_tab(browser: Browser, replay: Replay, tabs: list[Tab]) -> Tab:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", base_url=replay.base
    )
    tab = Tab(context, replay.base)
    tabs.append(tab)
    return tab


def test_a_teacher_comments_at_a_moment_and_a_pupil_sees_no_comments(
    browser: Browser, replay: Replay, tabs: list[Tab]
) -> None:
    teacher = open_tab(browser, replay, tabs)
    page = teacher.login("teacher-wang")
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="录像回放").click()
    expect(page.get_by_role("heading", name="录像回放")).to_be_visible()
    page.get_by_test_id("replay-row").first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(f"/replays/{replay.recording_id}$"))
    video = page.locator("#video")
    page.wait_for_function("document.getElementById('video')?.readyState >= 1")
    assert abs(video.evaluate("v => v.duration") - LESSON_S) < 0.5

    chapters = page.get_by_test_id("chapters")
    expect(chapters).to_contain_text("课堂开始")
    expect(chapters).to_contain_text("远端教室举手")
    chapters.get_by_role("button", name=re.compile("远端教室举手")).click()
    page.wait_for_function(
        f"Math.abs(document.getElementById('video')?.currentTime - {HAND_AT_S}) < 0.2"
    )

    page.get_by_label("播放速度").select_option("1.5")
    assert video.evaluate("v => v.playbackRate") == 1.5

    # an empty comment is refused next to the field, by the keyboard too
    body = page.get_by_label(re.compile("处添加评语"))
    expect(page.locator("label[for=comment-body]")).to_contain_text("00:03")
    body.focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#comment-body-error")).to_have_text("评语不能为空")
    expect(body).to_be_focused()

    body.fill("蔡源的孩子举手后，主讲及时请远端回答，互动自然。")
    page.get_by_role("button", name="添加评语").click()
    expect(page.locator("#comments-status")).to_contain_text("已在 00:03 处添加评语")
    thread = page.get_by_test_id("comment").first
    expect(thread).to_contain_text("王丽娟")
    expect(thread).to_contain_text("互动自然")
    marker = page.get_by_test_id("comment-marker")
    expect(marker).to_have_count(1)
    expect(marker).to_have_attribute("aria-label", re.compile("跳到 00:03 的评语"))
    left = marker.evaluate("m => parseFloat(m.style.left)")
    assert abs(left - 100 * HAND_AT_S / LESSON_S) < 2

    # the marker takes the player back to the comment's moment
    video.evaluate("v => { v.currentTime = 6; }")
    page.wait_for_function("document.getElementById('video')?.currentTime > 5.5")
    marker.click()
    page.wait_for_function("Math.abs(document.getElementById('video')?.currentTime - 3) < 0.2")

    thread.get_by_role("button", name="回复").click()
    page.get_by_label("回复 王丽娟").fill("补充：可以让龙洋的学生也说一说。")
    page.get_by_role("button", name="发送回复").click()
    expect(page.get_by_test_id("reply")).to_contain_text("龙洋的学生")

    criteria = page.locator("#criteria input")
    expect(criteria).to_have_count(5)
    for index in range(5):
        criteria.nth(index).fill("10")
    page.get_by_label("总评").fill("专递课堂互动设计好。")
    page.get_by_role("button", name="提交评分").click()
    expect(page.locator("#score-status")).to_contain_text("评分已提交")
    expect(page.get_by_test_id("score-row")).to_contain_text("王丽娟")
    # the English group's 教研 session reviews this lesson
    english = page.locator("#research-session option", has_text="王村口联盟英语教研组").first
    page.get_by_label("在教研活动中评议这节课").select_option(english.get_attribute("value"))
    page.get_by_role("button", name="关联", exact=True).click()
    expect(page.locator("#linked-sessions")).to_contain_text("王村口联盟英语教研组")
    teacher.check_labels()
    teacher.shot("replay-teacher")

    # leave at 05 and come back there
    video.evaluate("v => { v.currentTime = 5; }")
    page.wait_for_function("document.getElementById('video')?.currentTime > 4.5")
    with page.expect_response(re.compile(r"/position$")):
        video.evaluate("v => v.dispatchEvent(new Event('pause'))")
    page.reload()
    expect(page.locator("#resume-status")).to_contain_text("已从上次停下的 00:05 处继续")
    page.wait_for_function("Math.abs(document.getElementById('video')?.currentTime - 5) < 0.3")
    expect(page.get_by_test_id("comment-marker")).to_have_count(1)

    # 我的评课 on the home page opens the replay at the comment's moment, not where she left
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="我的课表").click()
    mine = page.locator("#my-comments")
    expect(mine).to_contain_text("互动自然")
    teacher.shot("teacher-home-comments")
    mine.get_by_role("link", name=re.compile("00:03")).first.click()
    expect(page).to_have_url(re.compile(rf"/replays/{replay.recording_id}\?t=3$"))
    page.wait_for_function("Math.abs(document.getElementById('video')?.currentTime - 3) < 0.3")

    pupil = open_tab(browser, replay, tabs)
    page = pupil.login("student-cy-4-1")
    page.get_by_role("link", name=re.compile("录像回放")).click()
    page.get_by_test_id("replay-row").first.get_by_role("link").click()
    expect(page.get_by_test_id("chapters")).to_contain_text("远端教室举手")
    page.wait_for_function("document.getElementById('video')?.readyState >= 1")
    expect(page.get_by_role("heading", name=re.compile("^评语"))).to_have_count(0)
    expect(page.get_by_test_id("comment-marker")).to_have_count(0)
    expect(page.get_by_text("互动自然")).to_have_count(0)
    expect(page.locator("#score-form")).to_have_count(0)
    assert page.request.get(f"/api/recordings/{replay.recording_id}/comments").status == 403
    pupil.check_labels()
    pupil.shot("replay-student")


def test_the_player_streams_hls_switches_quality_and_previews_thumbnails(
    browser: Browser, replay: Replay, tabs: list[Tab]
) -> None:
    page = open_tab(browser, replay, tabs).login("teacher-wang")
    page.goto(f"/replays/{replay.recording_id}")
    page.wait_for_function("document.getElementById('video')?.dataset.player === 'hls.js'")
    video = page.locator("#video")
    # hls.js feeds the element through Media Source Extensions, not the MP4
    page.wait_for_function("document.getElementById('video')?.readyState >= 2")
    assert video.evaluate("v => v.currentSrc").startswith("blob:")
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("document.getElementById('video')?.currentTime > 1")
    quality = page.get_by_label("清晰度")
    expect(quality).to_be_visible()
    quality.select_option(label="流畅")
    page.wait_for_function("document.getElementById('video')?.dataset.level === 'low'")
    before = video.evaluate("v => v.currentTime")
    page.wait_for_function(f"document.getElementById('video')?.currentTime > {before} + 0.5")
    quality.select_option(label="原画")
    page.wait_for_function("document.getElementById('video')?.dataset.level === 'main'")

    # hovering the timeline shows the sprite's tile for that moment
    preview = page.locator("#thumb-preview")
    expect(preview).to_be_hidden()
    page.wait_for_function("document.getElementById('timeline')?.classList.contains('has-thumbs')")
    box = page.locator("#timeline").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    expect(preview).to_be_visible()
    assert abs(float(preview.get_attribute("data-at") or 0) - 0.8 * LESSON_S) < 0.3
    image = preview.locator(".thumb-image")
    assert "thumbs.jpg" in image.evaluate("e => e.style.backgroundImage")
    # 6.4 s is in the second 4-second tile (one on each key frame of the low rendition)
    assert image.evaluate("e => e.style.backgroundPosition").startswith("-160px")
    page.mouse.move(box["x"], box["y"] - 200)
    expect(preview).to_be_hidden()


def test_the_player_falls_back_to_the_file_while_hls_is_being_made(
    browser: Browser, replay: Replay, tabs: list[Tab]
) -> None:
    page = open_tab(browser, replay, tabs).login("teacher-wang")
    page.goto(f"/replays/{replay.raw_only_id}")
    page.wait_for_function("document.getElementById('video')?.readyState >= 1")
    video = page.locator("#video")
    assert "rendition=raw" in video.evaluate("v => v.currentSrc")
    assert video.evaluate("v => v.dataset.player") is None
    expect(page.get_by_label("清晰度")).to_be_hidden()
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("document.getElementById('video')?.currentTime > 1")
    page.get_by_label("播放速度").select_option("2")
    assert video.evaluate("v => v.playbackRate") == 2

    # a link to a moment (a comment found by search) starts the player there
    page.goto(f"/replays/{replay.raw_only_id}?t=5")
    expect(page.locator("#resume-status")).to_have_text("已跳到 00:05")
    page.wait_for_function("Math.abs(document.getElementById('video')?.currentTime - 5) < 0.3")


def test_a_meeting_preview_gives_way_to_the_composed_version_where_the_viewer_is(
    browser: Browser, replay: Replay, tabs: list[Tab]
) -> None:
    tab = open_tab(browser, replay, tabs)
    page = tab.login("teacher-wang")
    page.goto(f"/replays/{replay.meeting_id}")
    banner = page.get_by_test_id("meeting-preview")
    expect(banner).to_contain_text("正在生成完整版（含共享屏幕与发言人切换）")
    page.wait_for_function("document.getElementById('video')?.readyState >= 1")
    video = page.locator("#video")
    assert "rendition=preview" in video.evaluate("v => v.currentSrc")  # a URL of its own
    assert abs(video.evaluate("v => v.duration") - MEETING_S) <= 0.5
    video.evaluate("v => { v.muted = true; v.currentTime = 6; return v.play(); }")
    page.wait_for_function("document.getElementById('video')?.currentTime > 7")
    kept = video.evaluate("v => { v.pause(); return v.currentTime; }")
    tab.shot("replay-meeting-preview")

    # the composition runs (重新处理, as the stop queues it) and replaces the preview
    page.evaluate(
        "async (id) => (await import('/static/js/api.js')).api("
        "`/api/recordings/${id}/process`, { method: 'POST' })",
        replay.meeting_id,
    )
    expect(banner).to_have_attribute("data-state", "composed", timeout=120_000)
    expect(banner).to_contain_text("已切换到完整版")
    assert "rendition=raw&version=composed" in video.evaluate("v => v.currentSrc")
    page.wait_for_function("document.getElementById('video')?.readyState >= 1")
    # same moment, still paused: the viewer goes on where they were
    assert abs(video.evaluate("v => v.currentTime") - kept) < 0.5
    assert video.evaluate("v => v.paused")
    tab.shot("replay-meeting-composed")


def test_a_failed_recording_is_queued_again_from_the_library(
    browser: Browser, replay: Replay, tabs: list[Tab]
) -> None:
    """The lesson's teacher finds her failed recording in 录像回放 and presses 重新处理: the
    job is queued (its id noted on the row) and the page says so; a pupil gets no such button."""
    engine = make_engine(f"sqlite:///{replay.root / 'demo.db'}")
    sessions = session_factory(engine)
    try:
        with sessions() as session:
            failed = recordings.new_recording_for_sync_group(session, sync_group_id=WCK_EN_4)
            failed.topic = "Unit 4 Weather"
            failed.status, failed.status_message = "failed", "转码失败"
            session.commit()
            failed_id = failed.id
        teacher = open_tab(browser, replay, tabs)
        page = teacher.login("teacher-wang")
        page.goto("/replays")
        row = page.get_by_test_id("replay-row").filter(has_text="Unit 4 Weather")
        expect(row).to_contain_text("失败")
        row.get_by_role("button", name=re.compile("^重新处理")).click()
        expect(page.locator("#reprocess-status")).to_contain_text("已重新排队处理")
        expect(row.get_by_role("button", name=re.compile("^重新处理"))).to_be_disabled()
        with sessions() as session:
            assert session.get_one(Recording, failed_id).job_id is not None, "queued"
        teacher.check_labels()

        pupil = open_tab(browser, replay, tabs)
        page = pupil.login("student-cy-4-1")
        page.goto("/replays")
        expect(page.get_by_test_id("replay-row").first).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("^重新处理"))).to_have_count(0)
    finally:
        engine.dispose()
