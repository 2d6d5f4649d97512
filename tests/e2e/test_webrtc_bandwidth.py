"""Chromium on a narrow link: the SFU writes abs-send-time on the video it sends, the
classroom's Chromium answers with REMB (its receive-side estimator: aiortc negotiates no
transport-cc), and the SFU thins the lead's camera for that classroom before the queue turns
into loss; once the link is wide again a probe brings the whole stream back. The bottleneck is
in the kernel path of the test's network namespace, on the classroom's inbound UDP only
(tests/fixtures/netimpair.py)."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from streaming.sfu.protection import BASE_LAYER_ONLY
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

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.solo,
]
QUEUE_MS = 1000
PROBE_OVER_S = 6.5  # the ladder's trial (5 s) and the tick that ends it

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
# What reaches the classroom on the wire: the transport's bytes (RTP/RTCP headers included)
# and packets, each of which also carries 28 bytes of IPv4 and UDP header through the link.
WIRE_IN = """async () => {
  let out = {bytes: 0, packets: 0};
  (await window.tongkeLesson.pc.getStats()).forEach((s) => {
    if (s.type === 'transport') {
      out.bytes += s.bytesReceived || 0;
      out.packets += s.packetsReceived || 0;
    }
  });
  return out;
}"""

# Every state the classroom's client goes through (a reconnect would be one), with its time.
RECORD_STATES = """() => {
  const lesson = window.tongkeLesson;
  const setState = lesson._setState.bind(lesson);
  window.tongkeStates = [];
  lesson._setState = (state, message = '') => {
    window.tongkeStates.push([Date.now(), state, message]);
    setState(state, message);
  };
}"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with running_demo(tmp_path_factory.mktemp("webrtc-bandwidth")) as server:
        yield server


@pytest.fixture(scope="module")
def server(demo: DemoServer) -> str:
    """The lesson module's ``pages`` opens its pages on this demo (whose log we read)."""
    return demo.base


def logged_at(line: str) -> float:
    """The wall-clock time (s) of a demo log line (its ISO timestamp, UTC)."""
    return datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()


AudioIn = dict[str, float]


def concealed_share(before: AudioIn, after: AudioIn) -> float:
    samples = after["samples"] - before["samples"]
    return (after["concealed"] - before["concealed"]) / max(samples, 1)


def audio_window(
    series: list[tuple[float, AudioIn]], start: float, end: float
) -> tuple[AudioIn, AudioIn] | None:
    """The audio stats at the first sample at or after ``start`` and the last at or before
    ``end`` (None when the series has no such pair)."""
    inside = [stats for at, stats in series if start - 0.5 <= at <= end + 0.5]
    return (inside[0], inside[-1]) if len(inside) >= 2 else None


def bandwidth_steps(demo: DemoServer) -> list[tuple[int | None, str]]:
    """(level, line) of every bandwidth-ladder change the SFU logged, and (None, line) of its
    drain waits and the loss ladder's changes (printed with them)."""
    steps: list[tuple[int | None, str]] = []
    for line in demo.log_path.read_text(errors="replace").splitlines():
        if "bandwidth_protection" in line:
            level = re.search(r"\bprotection_level=(\d)", line)
            if level:
                steps.append((int(level[1]), line))
        elif "bandwidth_drain_over" in line or "loss_protection" in line:
            steps.append((None, line))
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
    kiosk.evaluate(RECORD_STATES)
    audio_before, wire_before = kiosk.evaluate(AUDIO_IN), kiosk.evaluate(WIRE_IN)
    time.sleep(2)
    audio_after, wire_after = kiosk.evaluate(AUDIO_IN), kiosk.evaluate(WIRE_IN)
    audio_kbps = (audio_after["bytes"] - audio_before["bytes"]) * 8 / 1000 / 2
    wire_bytes = wire_after["bytes"] - wire_before["bytes"]
    wire_kbps = (wire_bytes + 28 * (wire_after["packets"] - wire_before["packets"])) * 8 / 2000
    port = kiosk.evaluate(LOCAL_PORT)
    assert port, "no selected ICE pair at the classroom"
    # The base layer (about a third of the video's bits) and audio fit, the whole stream does
    # not: the link carries what arrives now less 45 % of the video's bits. Headers count, as
    # on a real link (audio's are about as many bits as its payload): a limit set on payload
    # alone (audio + 55 % of the video) left the base layer too little room, and its keyframes
    # overflowed the queue.
    limit_kbps = round(wire_kbps - 0.45 * full["kbps"])
    steps_before = len(bandwidth_steps(demo))
    # a buffer of a second, as a rural uplink's modem has: the delay grows before loss
    with impair(rate_kbps=limit_kbps, queue_ms=QUEUE_MS, udp_dport=port) as link:
        narrowed, narrowed_at = time.monotonic(), time.time()
        limited = wait_for(
            "the classroom thinned",
            lambda: receive_rate(kiosk, 2.0),
            lambda rate: rate["fps"] < 0.5 * full["fps"],
            timeout=40,
        )
        thinned_after_s = time.monotonic() - narrowed
        audio_start = kiosk.evaluate(AUDIO_IN)  # once protected, audio keeps playing
        # audio each second while the ladder steps down, drains and probes (a probe comes 8 s
        # after the step down, which comes 1.4-1.7 s after the limit)
        audio_series = [(time.time(), audio_start)]
        for _ in range(15):
            time.sleep(1.0)
            audio_series.append((time.time(), kiosk.evaluate(AUDIO_IN)))
        # The base layer fits: the ladder waits out the queue's drain instead of going on to
        # audio only (it did, before the drain wait, and the picture stood still until a
        # probe 8 s later), so the picture still moves behind the narrow link.
        thinned = wait_for(
            "the picture moving behind the narrow link",
            lambda: receive_rate(kiosk, 3.0),
            lambda rate: rate["fps"] > 0,
            timeout=10,
        )
        audio_end = kiosk.evaluate(AUDIO_IN)
        # Lift the limit between probes: one cut short by the lift (the bottleneck's queued
        # packets are lost with it) fails and doubles the hold, which only makes the test long.
        wait_for(
            "the ladder between probes",
            lambda: [line for level, line in bandwidth_steps(demo) if level is not None][-1:],
            # a probe is over once it failed (a new line) or ran its 5 s trial (kept: no line)
            lambda last: (
                not any(
                    "probing=True" in line and time.time() - logged_at(line) < PROBE_OVER_S
                    for line in last
                )
            ),
            timeout=10,
        )
    lifted, lifted_at = time.monotonic(), time.time()
    try:
        back = wait_for(
            "the whole stream back",
            lambda: receive_rate(kiosk, 2.0),
            lambda rate: rate["fps"] > 0.8 * full["fps"],
            # measured 6.5-6.6 s (4.3-6.5 s before the lift waited out probes; 36 s once, when
            # a probe cut short by the lift doubled the hold to 32 s); the next probe comes at
            # most a hold (16 s after one failed probe) after the lift
            timeout=40,
        )
    finally:
        print(f"classroom states: {kiosk.evaluate('() => window.tongkeStates')}")
    back_after_s = time.monotonic() - lifted
    steps = bandwidth_steps(demo)[steps_before:]
    samples = audio_end["samples"] - audio_start["samples"]
    concealed = (audio_end["concealed"] - audio_start["concealed"]) / max(samples, 1)
    # the ladder's changes, in seconds since the limit began
    changes = [(logged_at(line) - narrowed_at, level, line) for level, line in steps]
    bandwidth = [(at, level) for at, level, _line in changes if level is not None]
    probes = [at for at, _level, line in changes if "probing=True" in line]
    stepped_after_s = bandwidth[0][0] if bandwidth else None
    # audio concealed in each second while limited, and over each probe's first 5 s
    per_second = [
        (at - narrowed_at, concealed_share(before, after))
        for (_, before), (at, after) in itertools.pairwise(audio_series)
    ]
    during_probes = [
        concealed_share(*window)
        for probe in probes
        if (window := audio_window(audio_series, narrowed_at + probe, narrowed_at + probe + 5))
    ]
    print(
        f"classroom at {full['fps']:.1f} fps / {full['kbps']:.0f} kbit/s + audio "
        f"{audio_kbps:.0f} kbit/s ({wire_kbps:.0f} kbit/s on the wire); through {limit_kbps} "
        f"kbit/s ({QUEUE_MS} ms queue): "
        f"{limited['fps']:.1f} fps / {limited['kbps']:.0f} kbit/s {thinned_after_s:.1f} s after "
        f"the limit; first step down {stepped_after_s} s after it; at the end "
        f"{thinned['fps']:.1f} fps / {thinned['kbps']:.0f} kbit/s; audio concealed after the "
        f"thinning {concealed:.1%}, during probes (5 s each) "
        f"{[f'{share:.1%}' for share in during_probes]}; bottleneck tail-dropped "
        f"{link.tail_dropped} of {link.delayed + link.tail_dropped}; back to {back['fps']:.1f} "
        f"fps {back_after_s:.1f} s after the limit was lifted\n"
        f"levels (s since the limit: level): {[(round(at, 1), level) for at, level in bandwidth]}\n"
        f"audio concealed per second: {[(round(at), f'{share:.0%}') for at, share in per_second]}\n"
        + "\n".join(line for _level, line in steps)
    )
    assert stepped_after_s is not None, "the SFU never stepped down on the estimate"
    # measured 1.4-1.7 s (the estimate falls within a second of the queue's growth)
    assert stepped_after_s < 10
    # The base layer fits, and the ladder steps there at once (measured in every run). It
    # used to go on to audio only 4 s later, while the queue drained; now a further step
    # down comes only once the drain wait is over (after it settled, a real overuse at the
    # base layer: once in 13 runs, 7.7 s after the first step, on a loaded machine).
    assert bandwidth[0][1] == BASE_LAYER_ONLY, f"first step: {bandwidth}"
    drained = [at for at, level, line in changes if "bandwidth_drain_over" in line]
    for (at, level), (_before, previous) in zip(bandwidth[1:], bandwidth, strict=False):
        if level > previous and at < lifted_at - narrowed_at:
            assert any(bandwidth[0][0] < done <= at for done in drained), (
                f"stepped down again before the drain wait was over: {bandwidth}"
            )
    # Measured 0.0-7.6 % (it was 12.5-23.1 % before the drain wait and the early end of
    # probes): 0 % when the probe ends on the receiver's first lower estimate (0.4-0.6 s),
    # 6.4-7.6 % when the estimate sat too low to fall and the probe ran 3-4 s until its NACKs
    # ended it (20.7-22.9 % concealed in that probe's 5 s: the 1 s queue it built delays audio)
    assert concealed < 0.2
    assert pages.errors == []
