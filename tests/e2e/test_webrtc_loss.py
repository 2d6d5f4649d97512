"""30 % packet loss on every UDP leg (kernel rules, tests/fixtures/netimpair.py), Chromium at
both ends: the lead teacher's page publishes its fake camera and microphone through the SFU to
a paired classroom terminal. The SFU passes Opus in-band FEC through untouched (its answer
keeps ``useinbandfec=1``, its receiver reports tell the lead's encoder how much is lost), so
the classroom's audio stays continuous: FEC packets arrive and concealment stays far below
the loss. Video keeps being decoded. Run it in a loopback-only network namespace:
`unshare -n sh -c 'ip link set lo up && pytest tests/e2e/test_webrtc_loss.py -s'`.
"""

from __future__ import annotations

import itertools
import re
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, sync_playwright

from streaming.sfu.playout import PLAYOUT_DELAY_URI
from tests.e2e.test_webrtc_lesson import (  # noqa: F401 - fixtures
    CHROMIUM,
    CHROMIUM_ARGS,
    GROUP_CODE,
    TERMINALS,
    Pages,
    frames,
    pages,
    server,
    slot_stats,
    start_lesson,
    wait_for,
)
from tests.fixtures.netimpair import impair, in_private_network_namespace

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.skipif(not in_private_network_namespace(), reason="kernel loss needs unshare -n"),
    pytest.mark.solo,
]

# 30 % lost between the lead and the classroom (each of the two legs loses 1 - sqrt(0.7)),
# with 80 ms one way on each leg; and the harsher reading, 30 % on each leg (51 % in all)
LINKS = [
    pytest.param(1 - 0.7**0.5, 80, id="30%-path-80ms"),
    pytest.param(0.30, 0, id="30%-each-leg"),
]
SECONDS = 15


def speech_like_wav(path: Path, seconds: int = 20, rate: int = 48000) -> Path:
    """A voiced, syllable-paced signal (harmonics of a gliding pitch): Opus codes in-band FEC
    for active speech only, and Chromium's default fake microphone is mostly silence."""
    t = np.arange(seconds * rate) / rate
    pitch = 160 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    samples = (voice * syllables / 3 * 20000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Chromium whose fake microphone speaks (see ``speech_like_wav``)."""
    wav = speech_like_wav(tmp_path_factory.mktemp("voice") / "voice.wav")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        yield chromium
        chromium.close()


# The terminal's inbound audio and video for the lead's slots; on the lead's page, what its
# outbound audio hears back in receiver reports (remote-inbound-rtp) and its outbound video
# (the NACKs the SFU sent it).
LOSS_STATS = """async () => {
  const lesson = window.tongkeLesson;
  const slots = {};
  lesson.pc.getTransceivers().forEach((t, i) => {
    if (t.mid !== null) slots[t.mid] = lesson.media[i].name;
  });
  const out = {};
  (await lesson.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && slots[s.mid]) out[slots[s.mid]] = s;
    if (s.type === 'remote-inbound-rtp' && s.kind === 'audio') out.remote_audio = s;
    if (s.type === 'outbound-rtp' && s.kind === 'video') out.sent_video = s;
  });
  return out;
}"""


# Every frame the terminal actually shows of the lead's camera (requestVideoFrameCallback on
# the <video> playing that track): the longest gap between two is the longest freeze seen.
WATCH_FRAMES = """() => {
  const lesson = window.tongkeLesson;
  const index = lesson.media.findIndex((line) => line.name === 'lead_camera');
  const track = lesson.pc.getTransceivers()[index].receiver.track;
  const video = [...document.querySelectorAll('video')].find(
    (v) => v.srcObject && v.srcObject.getVideoTracks().includes(track));
  const watch = {shown: 0, longest: 0, last: null};
  const onFrame = (now) => {
    if (watch.last !== null) watch.longest = Math.max(watch.longest, now - watch.last);
    watch.last = now;
    watch.shown += 1;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  window.tongkeWatch = watch;
  return Boolean(video);
}"""


def loss_stats(page: Page) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = page.evaluate(LOSS_STATS)
    return stats


def opus_fmtp(sdp: str) -> str:
    payload = re.search(r"a=rtpmap:(\d+) opus/48000", sdp, re.IGNORECASE)
    assert payload is not None, "no Opus in the SDP"
    fmtp = re.search(rf"a=fmtp:{payload[1]} (.*)", sdp)
    return fmtp[1].strip() if fmtp else ""


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> float:
    return float(after.get(key, 0) or 0) - float(before.get(key, 0) or 0)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("leg_loss", "delay_ms"), LINKS)
def test_thirty_percent_loss_keeps_audio_continuous_with_opus_fec(
    server: str,  # noqa: F811 - the fixture
    pages: Pages,  # noqa: F811
    leg_loss: float,
    delay_ms: int,
) -> None:
    lead, kiosk = start_lesson(server, pages)
    # the SFU's answer asks the lead for in-band FEC, and offers it to the terminal
    for page in (lead, kiosk):
        answer = page.evaluate("() => window.tongkeLesson.pc.remoteDescription.sdp")
        assert "useinbandfec=1" in opus_fmtp(answer), opus_fmtp(answer)

    with impair(loss=leg_loss, delay_ms=delay_ms) as link:
        time.sleep(3)  # receiver reports reach the lead; its encoder turns FEC on
        before = loss_stats(kiosk)
        frames_seen = [before["lead_camera"].get("framesDecoded", 0)]
        # each receiver report covers about a second of audio (25-75 packets): at 16 % one of
        # them may show almost no loss, so the lead's view is taken from every second's report
        lead_fractions: list[float] = []
        for _ in range(SECONDS):
            time.sleep(1)
            frames_seen.append(loss_stats(kiosk)["lead_camera"].get("framesDecoded", 0))
            lead_fractions.append(loss_stats(lead).get("remote_audio", {}).get("fractionLost", 0))
        after = loss_stats(kiosk)
    audio_before, audio = before["lead_audio"], after["lead_audio"]
    samples = _delta(audio, audio_before, "totalSamplesReceived")
    concealed = _delta(audio, audio_before, "concealedSamples")
    silent = _delta(audio, audio_before, "silentConcealedSamples")
    fec = _delta(audio, audio_before, "fecPacketsReceived")
    fec_unused = _delta(audio, audio_before, "fecPacketsDiscarded")
    packets = _delta(audio, audio_before, "packetsReceived")
    lost = _delta(audio, audio_before, "packetsLost")
    events = _delta(audio, audio_before, "concealmentEvents")
    video_fps = (frames_seen[-1] - frames_seen[0]) / SECONDS
    longest_still = still = 0  # seconds in a row without a newly decoded frame
    for previous, current in itertools.pairwise(frames_seen):
        still = still + 1 if current == previous else 0
        longest_still = max(longest_still, still)
    print(
        f"{leg_loss:.1%} loss + {delay_ms} ms on each leg, {SECONDS} s: "
        f"kernel dropped {link.dropped} of {link.udp_packets} UDP packets; terminal audio: "
        f"{packets:.0f} packets received, {lost:.0f} lost "
        f"({lost / max(packets + lost, 1):.0%}), FEC packets {fec:.0f} "
        f"({fec_unused:.0f} discarded), concealed {concealed / max(samples, 1):.1%} of "
        f"{samples:.0f} samples ({silent:.0f} silent, {events:.0f} concealment events); "
        f"video {video_fps:.1f} fps decoded, longest still {longest_still} s; lead's audio "
        f"fraction lost as reported back {max(lead_fractions):.3f} at most"
    )
    assert link.dropped > 0
    assert fec > fec_unused, "the terminal received Opus in-band FEC and used some"
    path_loss = lost / (packets + lost)  # no NACK for audio: what the terminal missed
    assert path_loss > 0.2
    # without FEC about as much is concealed as is lost (or more)
    assert concealed / samples < 0.7 * path_loss
    assert silent / samples < 0.05, "no long silent runs"
    assert max(lead_fractions) > 0.05, "the lead's encoder hears about the loss"
    # at this loss the SFU may send only the base temporal layer (a quarter of the frames);
    # seconds in a row without a new frame measured 0-1 in 7 runs and 2 once, at 51 % loss
    # (7.1 fps): a key frame's repair can take two seconds there
    assert video_fps > 2.5 and longest_still <= 2, "video keeps moving"


@pytest.mark.timeout(180)
def test_five_percent_loss_and_80_ms_never_freeze_the_picture_a_second(
    server: str,  # noqa: F811 - the fixture
    pages: Pages,  # noqa: F811
) -> None:
    """The issue's weak link with browsers at both ends: NACKs go upstream (the SFU asks the
    lead's Chromium) and downstream (the terminal asks the SFU), and the picture never stops
    for a second (framesDecoded sampled every 0.2 s)."""
    lead, kiosk = start_lesson(server, pages)
    # the SFU answers the terminal's offer of the playout-delay extension (streaming/sfu/
    # playout.py): how long to wait for a frame repaired on either leg is the SFU's to say
    answer = kiosk.evaluate("() => window.tongkeLesson.pc.remoteDescription.sdp")
    assert PLAYOUT_DELAY_URI in answer
    with impair(loss=0.05, delay_ms=80) as link:
        time.sleep(2)  # packets in flight, first repairs
        before, lead_before = loss_stats(kiosk), loss_stats(lead)
        assert kiosk.evaluate(WATCH_FRAMES), "the lead's camera is on the terminal's screen"
        time.sleep(SECONDS)
        shown = kiosk.evaluate("() => ({...window.tongkeWatch})")
        after, lead_after = loss_stats(kiosk), loss_stats(lead)
    video, video_before = after["lead_camera"], before["lead_camera"]
    fps = _delta(video, video_before, "framesDecoded") / SECONDS
    shown_fps = shown["shown"] / SECONDS
    sent = lead_after["sent_video"], lead_before["sent_video"]
    sent_fps = _delta(*sent, "framesEncoded") / SECONDS
    longest_freeze = shown["longest"] / 1000
    nacks_down = _delta(video, video_before, "nackCount")
    nacks_up = _delta(lead_after["sent_video"], lead_before["sent_video"], "nackCount")
    resent_up = _delta(
        lead_after["sent_video"], lead_before["sent_video"], "retransmittedPacketsSent"
    )
    emitted = max(_delta(video, video_before, "jitterBufferEmittedCount"), 1)
    buffered_ms, target_ms, minimum_ms = (
        _delta(video, video_before, key) / emitted * 1000
        for key in ("jitterBufferDelay", "jitterBufferTargetDelay", "jitterBufferMinimumDelay")
    )
    print(
        f"5% loss + 80 ms on each leg, {SECONDS} s, Chromium to Chromium: lead encoded "
        f"{sent_fps:.1f} fps, terminal received "
        f"{_delta(video, video_before, 'framesReceived') / SECONDS:.1f}, decoded {fps:.1f}, "
        f"shown {shown_fps:.1f}, longest gap "
        f"between frames shown {longest_freeze * 1000:.0f} ms; Chromium counts "
        f"freezes {_delta(video, video_before, 'freezeCount'):.0f} "
        f"({_delta(video, video_before, 'totalFreezesDuration'):.2f} s), keyframes decoded "
        f"{_delta(video, video_before, 'keyFramesDecoded'):.0f}; kernel dropped "
        f"{link.dropped} of {link.udp_packets} UDP packets, delayed {link.delayed}; NACKs "
        f"terminal to SFU {nacks_down:.0f}, SFU to lead {nacks_up:.0f} (lead resent "
        f"{resent_up:.0f}); jitter buffer per frame: {buffered_ms:.0f} ms held, target "
        f"{target_ms:.0f} ms, minimum {minimum_ms:.0f} ms; dropped "
        f"{_delta(video, video_before, 'framesDropped'):.0f}"
    )
    assert link.dropped > 0 and link.delayed > 0
    assert nacks_down > 0, "the terminal asked the SFU for what it lost"
    assert nacks_up > 0 and resent_up > 0, "the SFU asked the lead, which resent"
    assert longest_freeze < 1.0
    # Half of an L1T3 stream's frames are top-layer frames nothing refers to: one that lost a
    # packet on either leg is skipped when its repair (up to two round trips) comes after the
    # next frame is due. Measured before the SFU's playout delay, of 20 fps encoded: 10.7-16.7
    # decoded and 9.4-13.3 shown, 36-53 frames dropped in 15 s (the old bar of 10 shown failed
    # CI once); with it: 16.6-19.4 decoded and 14.2-16.1 shown, 4-23 dropped. That is in the
    # runs where the bandwidth ladder kept the full stream (8 of 10 without the delay, 15 of 18
    # with it); when it stepped down on a falling REMB, 4 decoded or a paused picture, both
    # ways, which is why these bars stay where they were. Since the ladder lets a fall pass
    # when the estimate climbs back (BandwidthPolicy.climb_cancels_fall), 18 runs of 18 kept
    # the full stream: 17.1-19.3 decoded, 14.1-16.2 shown (docs/streaming-measurements.md).
    assert sent_fps > 15, "the lead's encoder kept its frame rate"
    assert fps > 0.4 * sent_fps and shown_fps > 0.33 * sent_fps
    # What Chromium's buffer held a frame for: 319-499 ms with the playout delay (18 runs),
    # 76-187 ms without it (5 runs).
    assert buffered_ms > 250, "Chromium waits as long as the SFU says a repair takes"
