"""Chromium reaches a live lesson only through coturn, with the credentials the app mints.

`tongke demo` runs with TURN configured (TONGKE_TURN_URLS / TONGKE_TURN_SECRET) against a
real coturn on loopback (tests/fixtures/coturn.py: the shipped deploy/turnserver.conf less
its refusal of loopback peers). Both browsers are held to relay candidates, as on a school
network that lets nothing but the relay out: the lead teacher's page and a paired classroom
terminal connect, the terminal decodes the lead's camera and the lead the classroom's, and
each connection's selected pair is a relay one. Without a working credential from
`/api/webrtc/ice-servers` neither page could connect at all.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page

from tests.e2e.demo_process import running_demo
from tests.e2e.test_webrtc_lesson import (  # noqa: F401 - fixtures
    CHROMIUM,
    Pages,
    browser,
    frames,
    slot_stats,
    start_lesson,
    wait_for,
)
from tests.fixtures.coturn import running_coturn

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn is not installed"),
    pytest.mark.timeout(180),
]

SECRET = "turn-secret-for-the-browser-test-0123456789"

# Every peer connection the page makes gathers relay candidates only (what a browser does
# with iceTransportPolicy "relay"); the page's own code and ICE servers are left as they are.
RELAY_ONLY = """(() => {
  const Native = window.RTCPeerConnection;
  const RelayOnly = function (config, ...rest) {
    return new Native({...(config || {}), iceTransportPolicy: 'relay'}, ...rest);
  };
  RelayOnly.prototype = Native.prototype;
  Object.setPrototypeOf(RelayOnly, Native);
  window.RTCPeerConnection = RelayOnly;
})();"""

# The selected candidate pair of the lesson's connection: both ends' candidate types, and
# the TURN URL the local candidate was allocated on.
SELECTED_PAIR = """async () => {
  const stats = await window.tongkeLesson.pc.getStats();
  let out = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      const remote = pair && stats.get(pair.remoteCandidateId);
      if (local && remote) {
        out = {local: local.candidateType, remote: remote.candidateType, url: local.url || null};
      }
    }
  });
  return out;
}"""
# The ICE servers the page was given (the lesson client keeps the API's answer).
ICE_SERVERS = """async () => {
  const response = await fetch('/api/webrtc/ice-servers', {credentials: 'same-origin'});
  return response.json();
}"""


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with running_coturn(tmp_path_factory.mktemp("coturn"), SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, coturn: tuple[str, int]) -> Iterator[str]:
    host, port = coturn
    env = {
        "TONGKE_TURN_URLS": f'["turn:{host}:{port}?transport=udp"]',
        "TONGKE_TURN_SECRET": SECRET,
    }
    with running_demo(tmp_path_factory.mktemp("turn-demo"), env=env) as demo:
        yield demo.base


class RelayOnlyPages(Pages):
    def open(self, name: str) -> Page:
        page = super().open(name)
        page.context.add_init_script(RELAY_ONLY)
        return page


def test_a_lesson_reaches_the_classroom_through_the_relay_only(
    server: str,
    browser: Browser,  # noqa: F811 - the fixture
    coturn: tuple[str, int],
) -> None:
    relayed = RelayOnlyPages(browser, server)
    try:
        lead, kiosk = start_lesson(server, relayed)
        # and back: the lead decodes the classroom's camera through the same relay
        wait_for("the classroom's video at the lead", partial(slot_stats, lead),
                 frames("remote_video_0"))  # fmt: skip
        for page in (lead, kiosk):
            pair = wait_for(
                "a selected candidate pair", partial(page.evaluate, SELECTED_PAIR), bool
            )
            assert pair["local"] == "relay", pair
            host, port = coturn
            assert pair["url"] in (None, f"turn:{host}:{port}?transport=udp"), pair
        # the teacher's page was given a credential minted for her account
        servers = lead.evaluate(ICE_SERVERS)
        (turn,) = [entry for entry in servers if "username" in entry]
        assert str(turn["username"]).split(":", 1)[1].startswith("teacher-"), turn
    finally:
        errors = list(relayed.errors)
        for page in relayed.opened:
            page.context.close()
    assert errors == [], f"console errors: {errors}"
