"""An online 教研 meeting in Debian's Chromium against `tongke demo`, through the real SFU.

The English research group's leader (王丽娟, who has the host controls) enters from the 教研
page, a member (兰) opens the meeting; both publish Chromium's fake camera and microphone and
decode each other's video; the host's 全体静音 stops the member's audio reaching the host
(inbound audio bytes stand still) and the member's page shows the microphone off.
Screenshots go to test-artifacts/screenshots/meeting-*.png. Run it in a loopback-only network
namespace: `unshare -n sh -c 'ip link set lo up && pytest tests/e2e/test_webrtc_meeting.py'`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Page, expect

from tests.e2e.demo_process import running_demo
from tests.e2e.test_webrtc_lesson import (  # noqa: F401 - fixtures
    CHROMIUM,
    SCREENSHOTS,
    SLOT_STATS,
    Pages,
    admin_api,
    browser,
    falls_silent,
    pages,
    wait_for,
)

GROUP = "王村口联盟英语教研组"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("meeting-demo")) as demo:
        yield demo.base


def stats(page: Page) -> dict[str, dict[str, int]]:
    # Per receive slot of the meeting's connection: inbound bytes and decoded frames.
    found: dict[str, dict[str, int]] = page.evaluate(f"() => ({SLOT_STATS})(window.tongkeMeeting)")
    return found


def video_frames(page: Page) -> int:
    return sum(v["frames"] for k, v in stats(page).items() if k.startswith("speaker_video"))


def audio_bytes(page: Page) -> int:
    return sum(v["bytes"] for k, v in stats(page).items() if k.startswith("speaker_audio"))


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"meeting-{name}.png"), full_page=True)


def _session_starting_now(server: str) -> int:
    """Move one of the group's planned sessions to now (the schools' time), hosted by the
    group's leader, as an admin."""
    api, admin = admin_api(server)
    group = next(
        g for g in api.get("/api/research-groups", headers=admin).json() if g["name"] == GROUP
    )
    rows = api.get("/api/research-sessions", headers=admin, params={"limit": 500}).json()
    row = next(r for r in rows if r["group_id"] == group["id"] and r["status"] == "planned")
    now = datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(minutes=1)
    response = api.patch(
        f"/api/research-sessions/{row['id']}",
        headers=admin,
        json={
            "day": now.date().isoformat(),
            "start_time": now.strftime("%H:%M"),
            "minutes": 45,
            "host_id": group["leader_id"],  # 王丽娟 hosts; 兰 is a plain member
        },
    )
    assert response.status_code == 200, response.text
    return int(row["id"])


@pytest.mark.timeout(180)
def test_two_members_see_each_other_and_the_host_mutes_all(server: str, pages: Pages) -> None:  # noqa: F811
    session_id = _session_starting_now(server)

    host = pages.login("host", "teacher-wang")
    host.get_by_role("link", name="教研", exact=True).first.click()
    host.get_by_role("link", name="进入线上教研").first.click()
    expect(host.get_by_role("heading", name=f"线上教研 · {GROUP}")).to_be_visible()
    assert host.url.endswith(f"/research/sessions/{session_id}/meeting")
    member = pages.login("member", "teacher-lan")
    member.goto(f"{server}/research/sessions/{session_id}/meeting")

    for page in (host, member):
        expect(page.locator("#meeting")).to_have_attribute("data-state", "live", timeout=15_000)
    wait_for("host decodes the member", lambda: video_frames(host), lambda n: n > 0)
    wait_for("member decodes the host", lambda: video_frames(member), lambda n: n > 0)
    expect(host.get_by_test_id("people").locator("li")).to_have_count(2)
    expect(host.get_by_test_id("tiles").locator("video:visible")).to_have_count(2)
    expect(member.get_by_test_id("mute-all")).to_be_hidden()  # not a host
    shot(host, "host")

    # 巡课: a principal of the alliance finds the meeting on the patrol wall and looks in,
    # unseen by the teachers.
    principal = pages.login("principal", "principal-cy")
    principal.get_by_role("link", name="巡课").click()
    tile = principal.get_by_test_id("patrol-tile").filter(has_text="线上教研")
    expect(tile).to_contain_text(GROUP, timeout=15_000)
    expect(tile).to_contain_text("主持：王丽娟")
    patrol_stats = (
        f"() => ({SLOT_STATS})(window.tongkePatrol.get('research-{session_id}').connection)"
    )
    wait_for(
        "the meeting decoded on the patrol wall",
        lambda: principal.evaluate(patrol_stats),
        lambda found: any(
            v["frames"] > 0 for k, v in found.items() if k.startswith("speaker_video")
        ),
    )
    wait_for(
        "the tile shows the speaker's picture",
        lambda: tile.locator("video").evaluate("video => video.videoWidth"),
        lambda width: width > 0,
    )
    expect(tile.get_by_test_id("patrol-people")).to_contain_text("参会教师 2 人")
    time.sleep(1.0)  # a participants update the inspector would cause
    expect(host.get_by_test_id("people").locator("li")).to_have_count(2)
    shot(principal, "patrol")

    # The member's microphone reaches the host until the host mutes everyone.
    start = audio_bytes(host)
    wait_for("host hears the member", lambda: audio_bytes(host), lambda n: n > start + 2000)
    host.get_by_test_id("mute-all").click()
    expect(member.get_by_test_id("mic")).to_have_text("打开麦克风", timeout=5_000)
    expect(host.get_by_test_id("people")).to_contain_text("已静音")
    held = falls_silent("audio forwarded after 全体静音", lambda: audio_bytes(host))
    shot(member, "member-muted")

    # The member unmutes: heard again.
    member.get_by_test_id("mic").click()
    expect(member.get_by_test_id("mic")).to_have_text("关闭麦克风", timeout=5_000)
    wait_for("heard again", lambda: audio_bytes(host), lambda n: n > held + 2000)

    # Hands: the member raises one, the host lowers it.
    member.get_by_role("button", name="举手").click()
    member_row = host.get_by_test_id("people").locator("li").filter(has_text="蓝美玲")
    expect(member_row).to_contain_text("举手")
    member_row.get_by_role("button", name="放下手").click()
    expect(member.get_by_role("button", name="举手")).to_have_attribute("aria-pressed", "false")
    expect(member_row.get_by_role("button", name="放下手")).to_have_count(0)

    # Spotlight: the member's tile is the large one on the host's page.
    member_row.get_by_role("button", name="聚焦").click()
    large = host.locator("figure.mt-large")
    expect(large).to_contain_text("蓝美玲", timeout=5_000)
    expect(large).to_contain_text("聚焦")

    # Screen share from the browser: a second video reaching the host in its own slot.
    member.get_by_role("button", name="共享屏幕").click()
    wait_for(
        "host decodes the shared screen",
        lambda: stats(host).get("screen_share", {}).get("frames", 0),
        lambda n: n > 0,
    )
    expect(host.locator('figure[data-slot="screen_share"]')).to_contain_text("蓝美玲 的屏幕")
    shot(host, "screen-share")
    member.get_by_role("button", name="停止共享").click()
    expect(host.locator('figure[data-slot="screen_share"]')).to_have_count(0, timeout=5_000)

    # Recording: only the host has the buttons; while it runs, everyone sees 录制中.
    expect(member.get_by_test_id("start-recording")).to_be_hidden()
    expect(member.get_by_test_id("recording")).to_be_hidden()
    host.get_by_role("button", name="开始录制").click()
    for page in (host, member):
        expect(page.get_by_test_id("recording")).to_have_text("● 录制中", timeout=5_000)
    expect(host.get_by_role("button", name="开始录制")).to_be_hidden()
    shot(member, "recording")
    host.get_by_role("button", name="停止录制").click()
    expect(member.get_by_test_id("recording")).to_be_hidden(timeout=10_000)
    expect(host.get_by_role("button", name="开始录制")).to_be_visible()

    member.get_by_role("button", name="离开会议").click()
    member.wait_for_url(f"{server}/research")
    expect(host.get_by_test_id("people").locator("li")).to_have_count(1, timeout=10_000)
