"""单元合集 on the 录像回放 page, in Debian's Chromium (zh-CN) against `tongke demo`.

王丽娟 gathers two of her recorded English lessons into a unit: a blank name and a recording
added twice are refused in Chinese next to the field, she puts them in order and saves; she
edits the collection and removes one; a recording she may not watch (smuggled into the picker)
is refused by the server in Chinese and nothing of that save is kept; she deletes a second
collection. A pupil of 蔡源 4(1) sees the unit but no form. Screenshots:
test-artifacts/screenshots/replays-collection-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Page, expect
from sqlalchemy import select

from common.alliance.models import SyncGroup
from common.db import make_engine, session_factory
from tests.conftest import DemoDatabase
from tests.e2e.demo_process import running_demo
from tests.e2e.test_ui_journeys import (  # the fixtures are shared with the other journeys
    CHROMIUM,
    OpenTab,
    browser,  # noqa: F401
    open_tab,  # noqa: F401
    tabs,  # noqa: F401
)
from tests.fixtures.recordings import WCK_EN_3, WCK_EN_4, make_recording

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.timeout(240),
]


@dataclass(frozen=True)
class Library:
    base: str
    first: int  # Unit 3 第一课时, shown to 蔡源 4(1)
    second: int  # Unit 3 第二课时, shown to 蔡源 4(1)
    other_class: int  # 王村口 3(1): 王丽娟 may watch it, the pupil may not
    other_alliance: int  # 叶建平's mathematics: not 王丽娟's alliance


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("collection-demo")
    with running_demo(root) as demo:
        engine = make_engine(f"sqlite:///{root / 'demo.db'}")
        db = DemoDatabase(str(engine.url), session_factory(engine))
        try:
            with db.sessions() as session:
                maths = session.scalars(select(SyncGroup.id).where(SyncGroup.code == "dj-ma-4"))
                maths_group = maths.one()
            yield Library(
                demo.base,
                first=make_recording(db, WCK_EN_4, topic="Unit 3 第一课时 词汇"),
                second=make_recording(db, WCK_EN_4, topic="Unit 3 第二课时 对话"),
                other_class=make_recording(db, WCK_EN_3, topic="Unit 2 Colours"),
                other_alliance=make_recording(db, maths_group, topic="二次函数的图像"),
            )
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def server(library: Library) -> str:
    """The demo under the name the shared journey fixtures (browser, tabs, open_tab) use."""
    return library.base


def _pick(page: Page, recording_id: int) -> None:
    page.get_by_label("加入录像（只列出您可以观看的录像）").select_option(str(recording_id))
    page.get_by_role("button", name="加入合集").click()


def _save_and_reload(page: Page) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name="保存合集").click()
    expect(page.get_by_test_id("collection-form")).to_be_hidden()
    expect(page.locator("#collection-status")).to_have_text("单元合集已保存")


def _items(page: Page) -> list[str]:
    return [
        str(item.get_attribute("data-recording"))
        for item in page.get_by_test_id("collection-item").all()
    ]


def test_a_teacher_makes_and_edits_a_unit_collection_and_a_pupil_only_reads_it(
    open_tab: OpenTab,  # noqa: F811 (the shared fixture)
    library: Library,
) -> None:
    teacher = open_tab()
    page = teacher.login("teacher-wang")
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="录像回放").click()
    expect(page.get_by_role("heading", name="单元合集")).to_be_visible()
    form = page.get_by_test_id("collection-form")
    expect(form).to_be_hidden()
    page.get_by_role("button", name="新建合集").click()
    expect(form).to_be_visible()
    teacher.check_labels()

    # the picker lists only what she may watch: not the other alliance's lesson
    picker = page.locator("#collection-pick option")
    values = {str(o.get_attribute("value")) for o in picker.all()}
    assert {str(library.first), str(library.second), str(library.other_class)} <= values
    assert str(library.other_alliance) not in values

    # a blank name is refused next to the field, in Chinese
    page.get_by_role("button", name="保存合集").click()
    expect(page.locator("#collection-title-error")).to_have_text("请填写合集名称")
    expect(page.get_by_label("合集名称", exact=True)).to_be_focused()

    page.get_by_label("合集名称", exact=True).fill("Unit 3 My friends 单元复习")
    page.get_by_label("单元", exact=True).fill("Unit 3 My friends")
    page.get_by_label("学科", exact=True).select_option(label="英语")
    page.get_by_label("年级", exact=True).select_option(label="4 年级")
    _pick(page, library.first)
    _pick(page, library.second)
    _pick(page, library.first)
    expect(form.locator("[data-error-for=recording_ids]")).to_have_text("这节录像已经在合集中了")
    assert _items(page) == [str(library.first), str(library.second)]
    # the second lesson first: 上移 it
    page.get_by_role("button", name=re.compile("^上移：.*第二课时")).click()
    assert _items(page) == [str(library.second), str(library.first)]
    teacher.shot("replays-collection-form")
    _save_and_reload(page)
    saved = page.get_by_test_id("collection").filter(has_text="Unit 3 My friends 单元复习")
    expect(saved).to_contain_text("4 年级 · Unit 3 My friends · 王丽娟")
    links = saved.get_by_role("link")
    expect(links).to_have_count(2)
    expect(links.nth(0)).to_have_attribute("href", f"/replays/{library.second}")
    expect(links.nth(1)).to_have_attribute("href", f"/replays/{library.first}")

    # edit: the form comes back filled in; remove the first lesson, rename
    saved.get_by_role("button", name=re.compile("^编辑合集")).click()
    expect(page.get_by_label("合集名称", exact=True)).to_have_value("Unit 3 My friends 单元复习")
    expect(page.get_by_label("年级", exact=True)).to_have_value("4")
    assert _items(page) == [str(library.second), str(library.first)]
    page.get_by_role("button", name=re.compile("^移除：.*第一课时")).click()
    page.get_by_label("合集名称", exact=True).fill("Unit 3 对话课")
    _save_and_reload(page)
    renamed = page.get_by_test_id("collection").filter(has_text="Unit 3 对话课")
    expect(renamed.get_by_role("link")).to_have_count(1)
    expect(renamed.get_by_role("link")).to_have_attribute("href", f"/replays/{library.second}")

    # a recording she may not watch, smuggled into the picker: the server refuses it in
    # Chinese and keeps nothing of that save (the name stays as it was)
    renamed.get_by_role("button", name=re.compile("^编辑合集")).click()
    page.evaluate(
        """(id) => {
            const option = new Option("别的联盟的录像", String(id));
            option.dataset.title = "别的联盟的录像";
            document.getElementById("collection-pick").add(option);
        }""",
        library.other_alliance,
    )
    _pick(page, library.other_alliance)
    page.get_by_label("合集名称", exact=True).fill("不应保存的名称")
    teacher.allowed_statuses.add(422)
    page.get_by_role("button", name="保存合集").click()
    expect(form.locator("[data-error-for=recording_ids]")).to_have_text(
        f"录像 {library.other_alliance} 不存在或您无权查看"
    )
    teacher.shot("replays-collection-refused")
    page.reload()
    expect(page.get_by_test_id("collection").filter(has_text="Unit 3 对话课")).to_have_count(1)
    expect(page.get_by_test_id("collection").filter(has_text="不应保存的名称")).to_have_count(0)

    # a second, empty collection, then deleted
    page.get_by_role("button", name="新建合集").click()
    page.get_by_label("合集名称", exact=True).fill("待删除的合集")
    page.get_by_label("单元", exact=True).fill("Unit 4")
    _save_and_reload(page)
    spare = page.get_by_test_id("collection").filter(has_text="待删除的合集")
    expect(spare).to_contain_text("合集中还没有录像")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        spare.get_by_role("button", name=re.compile("^删除合集")).click()
    expect(page.locator("#collection-status")).to_have_text("单元合集已删除")
    expect(page.get_by_test_id("collection").filter(has_text="待删除的合集")).to_have_count(0)

    # the pupil sees the unit (its lesson is shown to her class) but no form, no edit buttons
    pupil = open_tab()
    page = pupil.login("student-cy-4-1")
    page.goto(library.base + "/replays")
    unit = page.get_by_test_id("collection").filter(has_text="Unit 3 对话课")
    expect(unit.get_by_role("link")).to_have_count(1)
    expect(page.get_by_role("button", name="新建合集")).to_have_count(0)
    expect(page.get_by_test_id("collection-form")).to_have_count(0)
    expect(unit.get_by_role("button")).to_have_count(0)
    pupil.shot("replays-collection-pupil")
