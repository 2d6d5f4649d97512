"""Chromium on a narrow link: the SFU writes abs-send-time on the video it sends, the
classroom's Chromium answers with REMB (its receive-side estimator: aiortc negotiates no
transport-cc), and the SFU thins the lead's camera for that classroom before the queue turns
into loss; once the link is wide again a probe brings the whole stream back. The bottleneck is
in the kernel path of the test's network namespace, on the classroom's inbound UDP only
(tests/fixtures/netimpair.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from tests.e2e.demo_process import DemoServer, running_demo
from tests.e2e.test_webrtc_lesson import (  # noqa: F401 - fixtures
    CHROMIUM,
    Pages,
    browser,
    pages,
    receive_rate,
    start_lesson,
    wait_for,
)
from tests.fixtures.netimpair import impair

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
QUEUE_MS = 1000

# The classroom's own UDP port (the selected ICE pair's local candidate).
LOCAL_PORT = """async () => {
  let port = null;
  const stats = await window.tongkeLesson.pc.getStats();
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      if (local) port = local.port;
    }
  });
  return port;
}"""
AUDIO_IN = """async () => {
  let out = {samples: 0, concealed: 0, bytes: 0};
  (await window.tongkeLesson.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      out.samples += s.totalSamplesReceived || 0;
      out.concealed += s.concealedSamples || 0;
      out.bytes += s.bytesReceived || 0;
    }
  });
  return out;
}"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with running_demo(tmp_path_factory.mktemp("webrtc-bandwidth")) as server:
        yield server


@pytest.fixture(scope="module")
def server(demo: DemoServer) -> str:
    """The lesson module's ``pages`` opens its pages on this demo (whose log we read)."""
    return demo.base


def bandwidth_steps(demo: DemoServer) -> list[tuple[int, str]]:
    """(level, line) of every bandwidth-ladder change the SFU logged."""
    steps = []
    for line in demo.log_path.read_text(errors="replace").splitlines():
        if "bandwidth_protection" in line:
            level = re.search(r"\bprotection_level=(\d)", line)
            if level:
                steps.append((int(level[1]), line))
    return steps


@pytest.mark.timeout(240)
def test_a_classroom_behind_a_narrow_link_is_thinned_on_its_estimate_and_probed_back(
    demo: DemoServer,
    pages: Pages,  # noqa: F811 - the fixture
) -> None:
    _lead, kiosk = start_lesson(demo.base, pages)
    full = wait_for(
        "the classroom receiving the whole stream",
        lambda: receive_rate(kiosk),
        lambda rate: rate["fps"] > 12,
        timeout=40,
    )
    audio_before = kiosk.evaluate(AUDIO_IN)
    time.sleep(2)
    audio_after = kiosk.evaluate(AUDIO_IN)
    audio_kbps = (audio_after["bytes"] - audio_before["bytes"]) * 8 / 1000 / 2
    port = kiosk.evaluate(LOCAL_PORT)
    assert port, "no selected ICE pair at the classroom"
    # the base layer (about a third of the bits) and audio fit, the whole stream does not
    limit_kbps = round(audio_kbps + 0.55 * full["kbps"])
    steps_before = len(bandwidth_steps(demo))
    # a buffer of a second, as a rural uplink's modem has: the delay grows before loss
    with impair(rate_kbps=limit_kbps, queue_ms=QUEUE_MS, udp_dport=port) as link:
        limited = wait_for(
            "the classroom thinned",
            lambda: receive_rate(kiosk, 2.0),
            lambda rate: rate["fps"] < 0.5 * full["fps"],
            timeout=40,
        )
        audio_start = kiosk.evaluate(AUDIO_IN)  # once protected, audio keeps playing
        time.sleep(10)
        # Behind a queue of a second the estimate goes on falling while the queue drains, and
        # the ladder can overshoot to audio only; its probe brings the base layer back after
        # the 8 s hold (a known weakness, in the README). The picture must move again while
        # the link is still narrow.
        thinned = wait_for(
            "the picture moving behind the narrow link",
            lambda: receive_rate(kiosk, 3.0),
            lambda rate: rate["fps"] > 0,
            timeout=30,
        )
        audio_end = kiosk.evaluate(AUDIO_IN)
    lifted = time.monotonic()
    back = wait_for(
        "the whole stream back",
        lambda: receive_rate(kiosk, 2.0),
        lambda rate: rate["fps"] > 0.8 * full["fps"],
        timeout=75,
    )
    back_after_s = time.monotonic() - lifted
    steps = bandwidth_steps(demo)[steps_before:]
    samples = audio_end["samples"] - audio_start["samples"]
    concealed = (audio_end["concealed"] - audio_start["concealed"]) / max(samples, 1)
    print(
        f"classroom at {full['fps']:.1f} fps / {full['kbps']:.0f} kbit/s + audio "
        f"{audio_kbps:.0f} kbit/s; through {limit_kbps} kbit/s ({QUEUE_MS} ms queue): "
        f"{limited['fps']:.1f} fps / {limited['kbps']:.0f} kbit/s, 10 s later "
        f"{thinned['fps']:.1f} fps / {thinned['kbps']:.0f} kbit/s; audio concealed after that "
        f"{concealed:.1%}; bottleneck tail-dropped {link.tail_dropped} of "
        f"{link.delayed + link.tail_dropped}; back to {back['fps']:.1f} fps "
        f"{back_after_s:.1f} s after the limit was lifted\n"
        + "\n".join(line for _level, line in steps)
    )
    assert any(level > 0 for level, _line in steps), "the SFU never stepped down on the estimate"
    # Measured 12.5-23.1 % in four runs: the window starts while the full-rate queue still
    # drains, and a failed probe overfills the bottleneck, whose tail drop takes audio too
    # (known weaknesses, README "bandwidth estimates"); audio must still mostly play.
    assert concealed < 0.35
    assert pages.errors == []
