"""The bureau's dashboard in Debian's Chromium against `tongke demo`: filters, charts, export."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

from tests.e2e.test_ui_journeys import (  # noqa: F401  (fixtures)
    OpenTab,
    browser,
    open_tab,
    pytestmark,
    server,
    tabs,
)


def test_the_bureau_sees_the_dashboard_with_charts(open_tab: OpenTab) -> None:  # noqa: F811
    tab = open_tab()
    page = tab.login("bureau")
    page.get_by_role("link", name="数据看板").click()
    expect(page.get_by_role("heading", name="各校汇总")).to_be_visible()
    expect(page.get_by_role("link", name="数据看板")).to_have_attribute("aria-current", "page")
    summary = page.get_by_test_id("dashboard-summary")
    expect(summary.get_by_role("rowheader").first).to_be_visible()
    # Charts are server-rendered SVG with a name, and the same numbers as a table.
    expect(page.get_by_role("img", name="同步课堂（节）")).to_be_visible()
    expect(page.get_by_role("img", name="网络教研（场）")).to_be_visible()
    assert page.locator("svg polyline").count() >= 6
    page.get_by_text("以表格查看趋势数据").click()
    expect(page.get_by_test_id("dashboard-trend").locator("tbody tr").first).to_be_visible()
    tab.check_labels()

    # The other alliance's term, then one school and subject: the filters are a plain GET form.
    term = page.get_by_label("学期", exact=True)
    options = term.locator("option").all_inner_texts()
    assert len(options) == 2, options
    term.select_option(label=options[1])
    page.get_by_role("button", name="查看").click()
    expect(
        page.get_by_role("heading", name=f"数据看板 · {options[1].split(' · ')[0]}")
    ).to_be_visible()
    tab.shot("bureau-dashboard")
    page.get_by_label("学校", exact=True).select_option(label="蔡源小学")
    page.get_by_label("学科", exact=True).select_option(label="英语")
    page.get_by_role("button", name="查看").click()
    expect(summary.locator("tbody tr")).to_have_count(1)
    expect(summary.get_by_role("rowheader")).to_have_text("蔡源小学")
    expect(page.get_by_label("学科", exact=True)).to_have_value(
        page.get_by_label("学科", exact=True)
        .locator("option", has_text="英语")
        .get_attribute("value")
        or ""
    )
    # Another alliance's term: its schools and subjects differ, so the filters start over.
    page.get_by_label("学期", exact=True).select_option(label=options[0])
    page.get_by_role("button", name="查看").click()
    expect(
        page.get_by_role("heading", name=f"数据看板 · {options[0].split(' · ')[0]}")
    ).to_be_visible()

    with page.expect_download() as download:
        page.get_by_test_id("dashboard-export").click()
    assert download.value.suggested_filename.endswith(".xlsx")
