"""Every page of every role's navigation on a phone-sized screen (390×844) in Chromium.

A page passes when nothing makes the page itself scroll sideways (wide tables scroll inside
their own .table-wrap), the navigation is reachable, and no console error is logged.
Screenshots go to test-artifacts/screenshots/mobile-<role>-<n>.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, ViewportSize

from tests.e2e.test_ui_journeys import CHROMIUM, Tab, browser, server  # noqa: F401

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")

PHONE: ViewportSize = {"width": 390, "height": 844}
# The elements reaching furthest right (what to fix). Content clipped inside a .table-wrap
# does not count; an absolutely positioned element inside one would (hence its position).
WIDEST = """() => {
  const all = [...document.querySelectorAll('body *')]
    .filter((el) => !el.parentElement.closest('.table-wrap'))
    .map((el) => [el, el.getBoundingClientRect().right]);
  all.sort((a, b) => b[1] - a[1]);
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '');
  return all.slice(0, 4).map(([el, right]) => `${name(el)}:${Math.round(right)}`);
}"""
ROLES = ("teacher-ye", "student-dj-4-1", "admin-sy", "principal-dj", "bureau")


@pytest.fixture
def phone(browser: Browser, server: str) -> Iterator[Tab]:  # noqa: F811
    tab = Tab(
        browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, locale="zh-CN"),
        server,
    )
    yield tab
    errors = list(tab.errors)
    tab.context.close()
    assert errors == [], f"console errors: {errors}"


@pytest.mark.parametrize("username", ROLES)
def test_every_page_fits_a_phone(phone: Tab, username: str) -> None:
    page = phone.login(username)
    links = page.locator("nav[aria-label='主导航'] a")
    targets = list(
        dict.fromkeys(links.nth(i).get_attribute("href") or "" for i in range(links.count()))
    )
    assert targets, "the navigation offers no page"
    too_wide = []
    for number, href in enumerate(targets):
        phone.goto(href)
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 1:
            widest = page.evaluate(WIDEST)
            too_wide.append((href, overflow, widest))
        phone.shot(f"mobile-{username}-{number}")
    assert too_wide == [], f"pages wider than the phone (px too wide): {too_wide}"
