"""Admin tools in Debian's Chromium against `tongke demo`: 调课 planning and 花名册 upload."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from openpyxl import load_workbook
from playwright.sync_api import Browser, Page, expect

from common.alliance.roster import roster_template
from tests.e2e.test_ui_journeys import CHROMIUM, Tab, browser, server  # noqa: F401

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


@pytest.fixture
def tab(browser: Browser, server: str) -> Iterator[Tab]:  # noqa: F811
    opened = Tab(
        browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN"), server
    )
    yield opened
    errors = list(opened.errors)
    opened.context.close()
    assert errors == [], f"console errors: {errors}"


def workbook(tmp_path: Path, name: str, sheets: dict[str, list[list[object]]]) -> Path:
    book = load_workbook(BytesIO(roster_template()))
    for title, rows in sheets.items():
        for values in rows:
            book[title].append(values)
    path = tmp_path / name
    book.save(path)
    return path


def plan_for_a_busy_teacher(page: Page, day: str) -> int:
    """Try the listed teachers until a plan for ``day`` changes something; its row count."""
    teacher = page.get_by_label("请假教师")
    page.get_by_label("请假日期").fill(day)
    options = teacher.locator("option:not([hidden])")
    for index in range(min(options.count(), 8)):
        teacher.select_option(options.nth(index).get_attribute("value"))
        page.get_by_role("button", name="生成调课方案").click()
        expect(page.locator("#adjust-status")).to_have_text("调课方案已生成。", timeout=20_000)
        if page.locator("#adjust-rows tr").count():
            break
    rows = page.locator("#adjust-rows tr").count()
    assert rows >= 1
    return rows


def test_an_alliance_admin_plans_the_changes_for_an_absent_teacher(tab: Tab) -> None:
    page = tab.login("admin-sy")
    page.get_by_role("link", name="调课").click()
    expect(page.get_by_role("heading", name="调课", exact=True)).to_be_visible()
    tab.check_labels()
    plan_for_a_busy_teacher(page, "2026-09-21")
    expect(page.locator("#adjust-summary")).to_contain_text("必须调动")
    expect(page.locator("#adjust-rows")).to_contain_text("9月21日周一")
    tab.shot("admin-adjust")

    tab.allowed_statuses = {422}
    page.get_by_label("请假日期").fill("2026-09-26")
    page.get_by_role("button", name="生成调课方案").click()
    expect(page.locator("#date-error")).to_contain_text("周末")


def test_an_alliance_admin_applies_a_plan_and_revokes_it(tab: Tab) -> None:
    page = tab.login("admin-wck")
    tab.goto("/admin/adjust")
    expect(page.get_by_role("heading", name="本学期已应用的调课")).to_be_visible()
    applied = page.locator("#applied-rows tr")
    before = applied.count()
    page.get_by_label("代课", exact=True).select_option("auto")
    planned = plan_for_a_busy_teacher(page, "2026-09-07")  # a plain Monday
    tab.check_labels()
    page.get_by_label("请假原因（可选）").fill("病假")
    page.get_by_label("请假原因（可选）").press("Enter")  # the form submits from the keyboard
    expect(page.locator("#apply-status")).to_contain_text("已应用", timeout=20_000)
    expect(page.get_by_role("button", name="应用此方案")).to_be_disabled()
    expect(applied).to_have_count(before + 1)
    row = page.locator("#applied-rows tr", has_text="病假")
    expect(row).to_contain_text("2026-09-07")
    expect(row).to_contain_text("已应用")
    assert row.locator("li").count() == planned
    tab.shot("admin-adjust-applied")

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="撤销").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#applied-status")).to_contain_text("已撤销")
    expect(row).to_contain_text("已撤销")
    expect(row.get_by_role("button", name="撤销")).to_have_count(0)
    tab.shot("admin-adjust-revoked")


def test_a_school_admin_uploads_a_roster_and_sees_every_bad_row(tab: Tab, tmp_path: Path) -> None:
    page = tab.login("admin-wck")
    page.get_by_role("link", name="导入花名册").click()
    expect(page.get_by_role("heading", name="导入花名册")).to_be_visible()
    tab.check_labels()

    tab.allowed_statuses = {422}
    bad = workbook(
        tmp_path,
        "bad.xlsx",
        {
            "教室": [["wck-E2E", "二楼多媒体教室", "no-such-campus", 40, "多媒体"]],
            "学生": [["no-such-class", 2026901, "李明"]],
        },
    )
    page.get_by_label("花名册文件").set_input_files(str(bad))
    page.get_by_role("button", name="上传并导入").click()
    errors = page.locator("#roster-error-rows tr")
    expect(errors).to_have_count(2)
    expect(page.locator("#roster-error-rows")).to_contain_text("教室")
    expect(page.locator("#roster-error-rows")).to_contain_text("学生")
    expect(page.locator(".form-alert")).to_contain_text("未导入任何数据")
    tab.shot("admin-roster-errors")

    good = workbook(
        tmp_path,
        "good.xlsx",
        {"教室": [["wck-E2E", "二楼多媒体教室", "wck", 40, "多媒体"]]},
    )
    page.get_by_label("花名册文件").set_input_files(str(good))
    page.get_by_role("button", name="上传并导入").click()
    expect(page.locator("#roster-status")).to_have_text("导入完成。")
    expect(page.locator("#roster-counts tr").first).to_contain_text("教室")
    assert page.locator("#roster-counts tr").first.locator("td").first.inner_text() == "1"
    expect(page.locator("#roster-errors")).to_be_hidden()
    tab.shot("admin-roster-done")


def test_an_alliance_admin_sets_up_a_synchronized_lesson_and_removes_it(tab: Tab) -> None:
    page = tab.login("admin-sy")
    page.get_by_role("link", name="同步课堂设置").click()
    expect(page.get_by_role("heading", name="同步课堂设置")).to_be_visible()
    tab.check_labels()
    groups_before = page.locator("#groups tbody tr:not([hidden])").count()

    tab.allowed_statuses = {422}
    page.get_by_role("button", name="新建").click()
    expect(page.locator("#code-error")).to_contain_text("请填写编号")

    page.get_by_label("编号").fill("e2e-sync-1")
    lead = page.get_by_label("主讲课程")
    options = lead.locator("option")
    # The first free lead lesson that has a partner in another campus.
    for index in range(options.count()):
        lead.select_option(options.nth(index).get_attribute("value"))
        if page.locator("#members input[type=checkbox]").count():
            break
    page.locator("#members input[type=checkbox]").first.check()
    tab.shot("admin-sync-groups-form")
    page.get_by_role("button", name="新建").click()
    expect(page.locator("#groups tbody tr:not([hidden])")).to_have_count(groups_before + 1)
    row = page.locator("#groups tbody tr", has_text="e2e-sync-1")
    expect(row).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="删除").click()
    expect(page.locator("#groups tbody tr", has_text="e2e-sync-1")).to_have_count(0)
    expect(page.locator("#groups tbody tr:not([hidden])")).to_have_count(groups_before)


def test_an_admin_edits_a_bell_schedule_with_errors_explained(tab: Tab) -> None:
    page = tab.login("admin-wck")
    page.get_by_role("link", name="作息时间").click()
    tab.check_labels()
    form = page.locator(".bell-form").first
    end = form.get_by_label("第1节下课")
    original = end.input_value()
    start = form.get_by_label("第1节上课").input_value()

    tab.allowed_statuses = {422}
    end.fill(start)  # a period that ends when it starts
    form.get_by_role("button", name="保存").click()
    expect(form.locator(".form-alert")).to_contain_text("必须晚于上课时间")

    end.fill(original)
    rows = form.locator(".bell-rows tr")
    count = rows.count()
    form.get_by_role("button", name="添加一节").click()
    expect(rows).to_have_count(count + 1)
    form.get_by_role("button", name="保存").click()
    expect(form.locator(".status")).to_contain_text("已保存")
    tab.shot("admin-bells-edit")

    page.reload()
    form = page.locator(".bell-form").first
    expect(form.locator(".bell-rows tr")).to_have_count(count + 1)
    form.get_by_role("button", name="删除最后一节").click()
    form.get_by_role("button", name="保存").click()
    expect(form.locator(".status")).to_contain_text("已保存")
    page.reload()
    expect(page.locator(".bell-form").first.locator(".bell-rows tr")).to_have_count(count)


def test_a_teacher_finds_the_research_sessions_and_shares_a_plan(tab: Tab, tmp_path: Path) -> None:
    page = tab.login("teacher-ye")
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="教研").click()
    expect(page.get_by_role("heading", name="我的教研组")).to_be_visible()
    tab.check_labels()

    tab.allowed_statuses = {422}
    fake = tmp_path / "改了扩展名.pdf"
    fake.write_bytes(b"MZ" * 100)
    page.get_by_label("资料文件").set_input_files(str(fake))
    page.get_by_role("button", name="上传资料").click()
    expect(page.locator("#material-file-error")).to_contain_text("不是有效的 PDF")
    plan = tmp_path / "单元教学设计.pdf"
    plan.write_bytes(b"%PDF-1.4\n%%EOF\n" * 10)
    page.get_by_label("资料文件").set_input_files(str(plan))
    page.get_by_role("button", name="上传资料").click()
    expect(page.locator("#upcoming").get_by_role("link", name="单元教学设计.pdf")).to_be_visible()
    tab.shot("teacher-research")
