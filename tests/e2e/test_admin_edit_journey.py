"""An alliance admin edits schools, campuses, rooms and 教学任务 in place, in Debian's Chromium.

Refusals (duplicate names, a room or lesson of a sync group, a campus still in use) must be
explained on the page and change nothing. Screenshots: test-artifacts/screenshots/admin-*.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Page, expect

from tests.e2e.test_admin_tools import tab  # noqa: F401
from tests.e2e.test_ui_journeys import CHROMIUM, Tab, browser, server  # noqa: F401

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


def accept_next_dialog(page: Page) -> None:
    page.once("dialog", lambda dialog: dialog.accept())


def test_an_alliance_admin_edits_schools_and_campuses(tab: Tab) -> None:  # noqa: F811
    page = tab.login("admin-wck")
    page.get_by_role("link", name="学校与校区").click()
    expect(page.get_by_role("heading", name="学校与校区", exact=True)).to_be_visible()
    tab.check_labels()
    schools = page.locator("section.school h2")
    first_school = schools.nth(0).inner_text().replace("核心校", "").strip()

    # A second school may not take the first one's name: said next to the field.
    tab.allowed_statuses = {409}
    page.locator("section.school").nth(1).get_by_role(
        "button", name=re.compile("^编辑学校")
    ).click()
    form = page.locator("form[id^=edit-school-]:not([hidden])")
    form.get_by_label("学校名称").fill(first_school)
    form.get_by_role("button", name="保存").click()
    expect(form.locator(".field-error").first).to_contain_text(
        f"本教联体已有名为「{first_school}」"
    )
    tab.shot("admin-schools-duplicate")
    form.get_by_role("button", name="取消").click()
    expect(form).to_be_hidden()

    # Rename a campus with the keyboard only: Enter opens the form, Enter saves it.
    edit = page.get_by_role("button", name=re.compile("^编辑校区")).first
    edit.focus()
    page.keyboard.press("Enter")
    name = page.locator("tr[id^=edit-campus-]:not([hidden])").get_by_label("校区名称")
    expect(name).to_be_focused()
    original = name.input_value()
    name.fill(original + "（东）")
    page.keyboard.press("Enter")
    expect(page.locator("#edit-status")).to_contain_text(f"已保存校区「{original}」")
    expect(page.locator("tbody th", has_text=original + "（东）")).to_be_visible()
    tab.shot("admin-schools-edited")

    # A campus with classes and rooms is not deleted; the page says why.
    accept_next_dialog(page)
    page.get_by_role("button", name=f"删除校区「{original}（东）」").click()
    expect(page.locator("#edit-status")).to_contain_text("班级")
    expect(page.locator("#edit-status")).to_contain_text("请先删除或移走")
    expect(page.locator("tbody th", has_text=original + "（东）")).to_be_visible()


def test_an_alliance_admin_adds_edits_and_deletes_a_room(tab: Tab) -> None:  # noqa: F811
    page = tab.login("admin-wck")
    page.get_by_role("link", name="教室与终端").click()
    expect(page.get_by_role("heading", name="教室与终端", exact=True)).to_be_visible()
    tab.check_labels()

    section = page.locator("section.subsection").first
    section.locator("summary", has_text="新增教室").click()
    form = section.locator("details form")
    form.get_by_label("教室名称").fill("三楼录播教室")
    form.get_by_label("教室编号（全县唯一）").fill("e2e-room-1")
    form.get_by_label("容量（人）").fill("36")
    form.get_by_label("录播教室").check()
    tab.shot("admin-rooms-new")
    form.get_by_role("button", name="新增教室").click()
    expect(page.locator("#edit-status")).to_have_text("已新增教室。")
    row = page.locator("tr", has=page.locator("th", has_text="三楼录播教室"))
    expect(row).to_contain_text("录播")
    expect(row).to_contain_text("36")

    # The same name again in the same campus is refused next to the name.
    tab.allowed_statuses = {409}
    section = page.locator("section.subsection").first
    section.locator("summary", has_text="新增教室").click()
    form = section.locator("details form")
    form.get_by_label("教室名称").fill("三楼录播教室")
    form.get_by_label("教室编号（全县唯一）").fill("e2e-room-2")
    form.get_by_role("button", name="新增教室").click()
    expect(form.locator(".field-error").first).to_contain_text("本校区已有名为「三楼录播教室」")

    row.get_by_role("button", name="编辑教室「三楼录播教室」").click()
    edit = page.locator("tr[id^=edit-room-]:not([hidden])")
    edit.get_by_label("容量（人）").fill("40")
    edit.get_by_role("button", name="保存").click()
    expect(page.locator("#edit-status")).to_contain_text("已保存教室「三楼录播教室」")
    expect(row).to_contain_text("40")

    # A room where a synchronized lesson takes place stays.
    used = page.locator("tr", has=page.locator(".in-sync")).first
    used_name = used.locator("th").inner_text()
    accept_next_dialog(page)
    used.get_by_role("button", name=f"删除教室「{used_name}」").click()
    expect(page.locator("#edit-status")).to_contain_text("正用于同步课堂")
    expect(page.locator("th", has_text=used_name).first).to_be_visible()
    tab.shot("admin-rooms-refused")

    accept_next_dialog(page)
    row.get_by_role("button", name="删除教室「三楼录播教室」").click()
    expect(page.locator("#edit-status")).to_contain_text("已删除教室「三楼录播教室」")
    expect(page.locator("th", has_text="三楼录播教室")).to_have_count(0)


def test_an_alliance_admin_manages_the_teaching_assignments(tab: Tab) -> None:  # noqa: F811
    page = tab.login("admin-wck")
    page.get_by_role("link", name="教学任务").click()
    expect(page.get_by_role("heading", name="教学任务", exact=True)).to_be_visible()
    tab.check_labels()

    # A lesson taught in a synchronized lesson keeps its weekly count and is not deleted.
    tab.allowed_statuses = {409, 422}
    synced = page.locator("tbody tr", has=page.locator(".tag")).first
    what = (
        synced.get_by_role("button", name=re.compile("^编辑")).get_attribute("aria-label") or ""
    )[2:]
    per_week = synced.locator("td").nth(1).inner_text()
    synced.get_by_role("button", name=re.compile("^编辑")).click()
    form = page.locator("tr[id^=edit-lesson-]:not([hidden]) form")
    form.get_by_label("每周节数").fill("9")
    form.get_by_role("button", name="保存").click()
    expect(form.locator(".field-error", has_text="同步课堂")).to_be_visible()
    tab.shot("admin-lessons-refused")
    form.get_by_role("button", name="取消").click()
    accept_next_dialog(page)
    synced.get_by_role("button", name=f"删除{what}").click()
    expect(page.locator("#edit-status")).to_contain_text("正用于同步课堂")
    expect(synced.locator("td").nth(1)).to_have_text(per_week)

    page.locator("summary", has_text="新增教学任务").click()
    new = page.locator("#new-lesson")
    school_class = new.get_by_label("班级").locator("option:checked").inner_text()
    teacher_select = new.get_by_label("任课教师")
    teacher_select.select_option(index=teacher_select.locator("option").count() - 1)
    teacher = teacher_select.locator("option:checked").inner_text().split("（")[0]
    subject = new.get_by_label("学科").locator("option:checked").inner_text()
    section = page.locator(
        "section.subsection", has=page.get_by_role("heading", name=school_class, exact=True)
    )
    same = section.locator("tbody tr", has_text=teacher).filter(has_text=subject)
    before = same.count()
    new.get_by_label("每周节数").fill("1")
    new.get_by_role("button", name="新增教学任务").click()
    expect(page.locator("#edit-status")).to_have_text("已新增教学任务。")
    expect(same).to_have_count(before + 1)
    added = same.last
    expect(added.locator("td").nth(1)).to_have_text("1")
    tab.shot("admin-lessons")

    accept_next_dialog(page)
    added.get_by_role("button", name=re.compile("^删除")).click()
    expect(page.locator("#edit-status")).to_contain_text("已删除")
    expect(same).to_have_count(before)


def test_a_teacher_home_shows_my_comments(tab: Tab) -> None:  # noqa: F811
    page = tab.login("teacher-wang")
    expect(page.get_by_role("heading", name="我的评课")).to_be_visible()
    tab.check_labels()
    tab.shot("teacher-home")
