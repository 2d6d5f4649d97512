"""Each role's main journey through the web UI, in Debian's Chromium against `tongke demo`.

Every page is saved to test-artifacts/screenshots/<name>.png for a person to look at, every
form control must have a label, and no page may log a console error it did not expect.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from tests.conftest import DEMO_PASSWORD
from tests.e2e.demo_process import running_demo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Chinese UI conventions in the browser itself (24-hour <input type=time>, date formats).
    "--lang=zh-CN",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PAIRING_CODE = re.compile(r"^[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}$")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tongke demo` on a free loopback port, with its own database."""
    with running_demo(tmp_path_factory.mktemp("ui-demo")) as demo:
        yield demo.base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A page in its own browser context, collecting console errors and page errors."""

    def __init__(self, context: BrowserContext, base: str) -> None:
        self.context = context
        self.base = base
        self.page = context.new_page()
        self.errors: list[str] = []
        # Failed API calls a journey provokes on purpose (a wrong password is a 422).
        self.allowed_statuses: set[int] = set()
        self.offline = False
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = message.text
        match = re.search(r"status of (\d{3})", text)
        if match and int(match.group(1)) in self.allowed_statuses:
            return
        if self.offline and "net::ERR_INTERNET_DISCONNECTED" in text:
            return
        self.errors.append(text)

    def goto(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page

    def login(self, username: str, password: str = DEMO_PASSWORD) -> Page:
        page = self.goto("/login")
        page.get_by_label("用户名").fill(username)
        page.get_by_label("密码").fill(password)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(self.base + "/")
        return page

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def check_labels(self) -> None:
        """Every visible form control is labelled."""
        unlabelled = self.page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter((el) => el.type !== 'hidden')
                .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                .map((el) => el.id || el.name || el.outerHTML)"""
        )
        assert unlabelled == [], f"controls without a label: {unlabelled}"


@pytest.fixture
def tabs(browser: Browser, server: str) -> Iterator[list[Tab]]:
    """Opened tabs; after the test none may have logged an unexpected console error."""
    opened: list[Tab] = []
    yield opened
    for tab in opened:
        errors = list(tab.errors)
        tab.context.close()
        assert errors == [], f"console errors: {errors}"


OpenTab = Callable[..., Tab]


@pytest.fixture
def open_tab(browser: Browser, server: str, tabs: list[Tab]) -> OpenTab:
    def opener(*, mobile: bool = False) -> Tab:
        viewport = {"width": 390, "height": 844} if mobile else {"width": 1280, "height": 900}
        context = browser.new_context(viewport=viewport, locale="zh-CN", base_url=server)  # type: ignore[arg-type]
        tab = Tab(context, server)
        tabs.append(tab)
        return tab

    return opener


def test_a_wrong_password_shows_the_error_on_the_login_page(open_tab: OpenTab) -> None:
    tab = open_tab()
    tab.allowed_statuses = {401}
    page = tab.goto("/login")
    tab.check_labels()
    tab.shot("login")
    page.get_by_label("用户名").fill("teacher-wang")
    page.get_by_label("密码").fill("not-the-password")
    page.get_by_label("密码").press("Enter")  # the keyboard submits the form
    expect(page.get_by_role("alert")).to_contain_text("用户名或密码错误")
    expect(page.get_by_label("用户名")).to_have_value("teacher-wang")
    tab.shot("login-error")


def test_a_teacher_sees_sync_partners_subscribes_a_calendar_and_exports(open_tab: OpenTab) -> None:
    tab = open_tab()
    page = tab.login("teacher-wang")
    expect(page.get_by_role("heading", name=re.compile("本周课表"))).to_be_visible()
    expect(page.get_by_role("link", name="我的课表")).to_have_attribute("aria-current", "page")
    # 王丽娟 leads the English 专递课堂: her lessons name the rural classrooms she teaches.
    badges = page.get_by_test_id("sync-badge")
    expect(badges.first).to_contain_text("专递课堂 · 主讲")
    expect(badges.first).to_contain_text("远端教室：")
    assert "蔡源小学" in badges.first.inner_text()
    tab.shot("teacher-home")

    subscribe = page.get_by_role("button", name="订阅到手机日历")
    subscribe.focus()
    page.keyboard.press("Enter")
    feed = page.get_by_label(re.compile("日历订阅地址"))
    expect(feed).to_have_value(re.compile(r"/calendar/.+\.ics$"))
    calendar = httpx.get(feed.input_value())
    assert calendar.status_code == 200 and "BEGIN:VCALENDAR" in calendar.text
    page.get_by_role("button", name="复制").click()
    expect(page.locator("#feed-status")).to_contain_text("复制")
    tab.check_labels()
    tab.shot("teacher-calendar")

    xlsx = page.request.get(page.get_by_role("link", name="导出 Excel").get_attribute("href") or "")
    assert xlsx.ok and xlsx.body()[:2] == b"PK"
    printable = page.request.get(
        page.get_by_role("link", name="打印版").get_attribute("href") or ""
    )
    assert printable.ok and "<table" in printable.text()

    mobile = open_tab(mobile=True)
    mobile.login("teacher-wang")
    expect(mobile.page.get_by_test_id("sync-badge").first).to_be_visible()
    mobile.shot("teacher-home-mobile")


def test_a_student_sees_only_their_own_class(open_tab: OpenTab) -> None:
    tab = open_tab()
    page = tab.login("student-cy-4-1")
    expect(page.get_by_role("heading", name=re.compile("蔡源小学 四\\(1\\)班"))).to_be_visible()
    lessons = page.get_by_test_id("lesson")
    assert lessons.count() > 10
    classes = {
        text.strip()
        for text in page.locator("[data-testid=lesson] .subject .muted").all_inner_texts()
    }
    assert classes == {"四(1)班"}
    # Remote end of the English lesson taught from 王村口.
    expect(page.get_by_test_id("sync-badge").first).to_contain_text("主讲：王村口小学")
    nav = page.get_by_role("navigation", name="主导航")
    assert nav.get_by_role("link").all_inner_texts() == ["我的课表", "修改密码"]
    own_class = page.request.get("/api/auth/me").json()["account"]["class_id"]
    other = page.request.get(f"/api/timetable/week?class_id={own_class + 1}")
    assert other.status == 403  # the next class of the same school is not theirs to read
    # Keyboard: the first Tab reaches the skip link, which jumps past the header.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="跳到主要内容")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile("#main$"))
    tab.shot("student-home")


def test_an_alliance_admin_pairs_a_classroom_terminal(open_tab: OpenTab) -> None:
    admin = open_tab()
    page = admin.login("admin-wck")
    expect(page.get_by_role("heading", name="学校概况")).to_be_visible()
    admin.shot("admin-home")
    for link, heading, name in (
        ("学校与校区", "学校与校区", "admin-schools"),
        ("作息时间", "作息时间", "admin-bells"),
    ):
        page.get_by_role("navigation", name="主导航").get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        admin.shot(name)
    expect(page.get_by_label("第1节上课").first).to_have_value("08:20")

    page.get_by_role("link", name="教室与终端").click()
    admin.shot("admin-rooms")
    row = page.get_by_role("row").filter(has_text="蔡源小学录播教室终端")
    row.get_by_role("button", name="生成配对码").click()
    code = page.get_by_test_id("pairing-code")
    expect(code).to_have_text(PAIRING_CODE)
    expect(page.locator("#pairing-expiry")).to_have_text(re.compile(r"\d{2}:\d{2}"))
    admin.shot("admin-rooms-pairing")

    screen = open_tab()
    kiosk = screen.goto("/terminal")
    expect(kiosk.get_by_role("heading", name="配对教室终端")).to_be_visible()
    screen.check_labels()
    screen.shot("terminal-pair")
    screen.allowed_statuses = {422}
    kiosk.get_by_label(re.compile("配对码")).fill("ABCD-EFGH")
    kiosk.get_by_label(re.compile("配对码")).press("Enter")
    expect(kiosk.locator("#code-error")).to_contain_text("配对码无效或已过期")
    kiosk.get_by_label(re.compile("配对码")).fill(code.inner_text())
    kiosk.get_by_role("button", name="配对").click()

    expect(kiosk.locator("#room-name")).to_have_text("蔡源小学录播教室终端")
    expect(kiosk.locator("#connection")).to_have_text("已连接")
    today = kiosk.get_by_test_id("today-list")
    expect(today.locator("li").first).to_be_visible()
    expect(today).to_contain_text("专递课堂")  # the rural room mostly receives lessons
    expect(kiosk.get_by_test_id("next-lesson")).not_to_be_empty()
    expect(kiosk.locator("#countdown")).to_have_text(re.compile(r"距(上|下)课 .*\d{2}:\d{2}:\d{2}"))
    expect(kiosk.get_by_text("同步课堂直播尚未接入本终端")).to_be_visible()
    screen.shot("terminal-kiosk")

    screen.offline = True
    screen.context.set_offline(True)
    # In a loopback-only network namespace the browser believes it is offline from the start,
    # so going "offline" fires no event by itself: send the one the OS would.
    kiosk.evaluate("window.dispatchEvent(new Event('offline'))")
    expect(kiosk.locator("#connection")).to_contain_text("未连接 · 重新连接中")
    screen.shot("terminal-offline")
    screen.context.set_offline(False)
    kiosk.evaluate("window.dispatchEvent(new Event('online'))")
    expect(kiosk.locator("#connection")).to_have_text("已连接", timeout=15_000)
    screen.offline = False

    kiosk.reload()  # the device token survives a restart of the screen
    expect(kiosk.locator("#room-name")).to_have_text("蔡源小学录播教室终端")
    expect(kiosk.get_by_role("heading", name="配对教室终端")).to_be_hidden()


def test_a_school_admin_creates_a_student_account(open_tab: OpenTab) -> None:
    tab = open_tab()
    tab.allowed_statuses = {409, 422}
    page = tab.login("principal-cy")
    page.get_by_role("link", name="账号").click()
    expect(page.get_by_role("heading", name="新建账号")).to_be_visible()
    tab.check_labels()
    page.get_by_label("角色").select_option(label="学生")
    page.get_by_label("班级").select_option(label="蔡源小学 五(1)班")
    student = page.get_by_label("学生", exact=True)
    expect(student).to_be_enabled()
    student.select_option(index=1)
    expect(page.get_by_label("显示名称")).not_to_have_value("")
    page.get_by_label("用户名").fill("student-cy-4-1")  # another pupil has it
    page.get_by_label("初始密码").fill("tongke-new-2026")
    page.get_by_role("button", name="创建账号").click()
    expect(page.locator("#username-error")).to_have_text("用户名 student-cy-4-1 已存在")
    expect(page.get_by_label("用户名")).to_be_focused()
    tab.shot("admin-accounts-error")
    page.get_by_label("用户名").fill("student-cy-5-new")
    page.get_by_role("button", name="创建账号").click()
    expect(page.locator("#account-status")).to_contain_text("已创建账号 student-cy-5-new")
    expect(page.locator("#accounts")).to_contain_text("student-cy-5-new")
    tab.shot("admin-accounts")


def test_the_bureau_sees_rooms_and_accounts_read_only(open_tab: OpenTab) -> None:
    tab = open_tab()
    page = tab.login("bureau")
    page.get_by_role("link", name="教室与终端").click()
    expect(page.get_by_role("heading", name="遂昌县实验小学 · 东街校区")).to_be_visible()
    assert page.get_by_role("button", name="生成配对码").count() == 0
    page.get_by_role("link", name="账号").click()
    expect(page.get_by_role("heading", name="账号列表")).to_be_visible()
    assert page.get_by_role("heading", name="新建账号").count() == 0
    assert page.get_by_role("link", name="课表求解").count() == 0
    tab.shot("bureau-accounts")


def test_a_principal_changes_their_own_password(open_tab: OpenTab) -> None:
    tab = open_tab()
    tab.allowed_statuses = {422}
    page = tab.login("principal-dj")
    page.get_by_role("link", name="修改密码").click()
    tab.check_labels()
    page.get_by_label("原密码").fill("wrong-password")
    page.get_by_label("新密码", exact=True).fill("dongjie-2026!")
    page.get_by_label("再次输入新密码").fill("dongjie-2026!")
    page.get_by_role("button", name="修改密码").click()
    old_error = page.locator("#old_password-error")
    expect(old_error).to_have_text("原密码错误")
    expect(page.get_by_label("原密码")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("原密码")).to_be_focused()
    tab.shot("password-error")

    page.get_by_label("原密码").fill(DEMO_PASSWORD)
    page.get_by_label("新密码", exact=True).fill("dongjie-2026!")
    page.get_by_label("再次输入新密码").fill("dongjie-2026!")
    page.get_by_role("button", name="修改密码").click()
    expect(page.get_by_role("status")).to_contain_text("密码已修改")
    expect(old_error).to_be_hidden()
    tab.shot("password")

    page.get_by_role("button", name="退出").click()
    page.wait_for_url(re.compile("/login$"))
    tab.login("principal-dj", "dongjie-2026!")
    expect(page.get_by_role("heading", name="学校概况")).to_be_visible()


# Records what the solve page showed while it polled, for the test to check afterwards.
WATCH_PROGRESS = """() => {
  window.seenProgress = [];
  const panel = document.getElementById('solve-job');
  new MutationObserver(() => window.seenProgress.push({
    state: document.getElementById('solve-state').textContent,
    value: document.getElementById('solve-progress').value,
    message: document.getElementById('solve-message').textContent,
    eta: document.getElementById('solve-eta').textContent,
  })).observe(panel, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def test_an_alliance_admin_solves_the_timetable_with_live_progress(open_tab: OpenTab) -> None:
    # Last in the file: it replaces 王村口's week, which the journeys above read.
    tab = open_tab()
    page = tab.login("admin-wck")
    page.get_by_role("link", name="课表求解").click()
    expect(page.get_by_role("heading", name="课表求解")).to_be_visible()
    tab.check_labels()
    limit = page.get_by_label("求解时限（秒）")
    limit.fill("0")
    page.get_by_role("button", name="开始求解").click()
    expect(page.locator("#time_limit-error")).to_have_text("求解时限应在 1 到 600 秒之间")
    limit.fill("2")
    page.evaluate(WATCH_PROGRESS)
    page.get_by_role("button", name="开始求解").click()
    expect(page.get_by_role("button", name="取消求解")).to_be_visible()
    page.wait_for_function(
        "() => document.getElementById('solve-job').dataset.state === 'running'"
        " && document.getElementById('solve-progress').value > 0"
    )
    tab.shot("solve-progress")
    state = page.get_by_test_id("solve-state")
    expect(state).to_have_text(re.compile("完成|失败|已取消"), timeout=60_000)
    tab.shot("solve-done")
    assert state.inner_text() == "完成", page.locator("#solve-message").inner_text()
    expect(page.locator("#solve-progress")).to_have_attribute("value", "100")
    expect(page.locator("#result-hard")).to_have_text("0")
    expect(page.locator("#solve-message")).to_contain_text("已保存")
    expect(page.get_by_role("button", name="取消求解")).to_be_hidden()
    seen = page.evaluate("window.seenProgress")
    running = [entry for entry in seen if entry["state"] == "求解中" and 0 < entry["value"] < 100]
    assert running, f"no live progress was shown: {seen}"
    assert any("硬约束冲突" in entry["message"] for entry in running)
    prints = page.locator("#campus-prints li:visible a")
    assert prints.count() == 3  # 王村口, 蔡源, 龙洋
    printable = page.request.get(prints.first.get_attribute("href") or "")
    assert printable.ok and "<table" in printable.text()
