"""A room: one synchronized lesson (or research meeting) and who receives what in it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import RTCConfiguration
from aiortc.clock import current_ms

from common.logging import get_logger
from streaming.sfu.downlink import Downlink
from streaming.sfu.errors import NegotiationError, RoomError
from streaming.sfu.events import EventHub, RoomEvent, RoomEventKind
from streaming.sfu.identity import ROLES_BY_ROOM_KIND, ParticipantIdentity, RoomKind
from streaming.sfu.layout import RoomLimits, media_layout, primary_video_slot
from streaming.sfu.participant import Participant
from streaming.sfu.routing import Assignment, ParticipantView, RoomView, assign_slots
from streaming.sfu.speakers import SpeakerDetector
from streaming.sfu.ticker import ticker_for
from streaming.sfu.track import PacketTap, PublishedTrack

log = get_logger(__name__)

Notify = Callable[[dict[str, Any]], None]


class RecordingHooks(Protocol):
    """What records a meeting room, attached by the process that owns the room
    (``streaming.meetings``): the room checks who asks, the hooks do the recording."""

    async def start(self, room: Room, by: ParticipantIdentity) -> None: ...

    async def stop(self, room: Room) -> None: ...


SPEAKER_WINDOW_S = 0.5
SENDER_REPORT_INTERVAL_S = 1.0


class Room:
    """Participants by role, raised hands, active speakers, and the slot routing between them.

    The room's housekeeping (speaker detection every half second; bandwidth, loss,
    playout-delay and sender-report counters every second) runs on the worker's shared
    ticker (``streaming.sfu.ticker``) from the first participant until ``close()``.
    """

    def __init__(
        self,
        room_id: str,
        kind: RoomKind,
        *,
        configuration: RTCConfiguration | None = None,
        limits: RoomLimits = RoomLimits(),
    ) -> None:
        self.room_id = room_id
        self.kind: RoomKind = kind
        self.limits = limits
        self.events = EventHub()
        self.participants: dict[str, Participant] = {}
        self.accepted_hands: list[str] = []
        self.inspect_requests: dict[str, str] = {}
        self.speakers = SpeakerDetector()
        # research meetings (see "meeting host controls" below)
        self.muted: set[str] = set()
        self.audio_locked = False
        self.spotlight: str | None = None
        self.screen_sharer: str | None = None
        self.recording_hooks: RecordingHooks | None = None
        self.recording = False
        self.closed = False
        self._configuration = configuration or RTCConfiguration(iceServers=[])
        self._assignments: dict[str, Assignment] = {}
        self._packet_taps: list[PacketTap] = []
        self._lesson_started = False
        self._stop_ticking: Callable[[], None] | None = None
        self._housekeeping_ticks = 0

    # -- membership -------------------------------------------------------------------

    async def join(
        self, identity: ParticipantIdentity, *, notify: Notify, board: bool = False
    ) -> Participant:
        if self.closed:
            raise RoomError("课堂已结束", code="room_closed")
        if identity.room_id != self.room_id:
            raise RoomError("无权加入该课堂", code="forbidden")
        if identity.role not in ROLES_BY_ROOM_KIND[self.kind]:
            raise RoomError("该角色不能加入此类房间", code="role_not_allowed")
        existing = self.participants.get(identity.participant_id)
        if existing is not None:
            # the same classroom reconnecting: the new connection replaces the old one
            await self._remove(existing, reason="replaced")
        elif identity.role == "lead" and any(p.role == "lead" for p in self.participants.values()):
            raise RoomError("本课堂已有主讲教室", code="lead_taken")
        participant = self._new_participant(identity, notify, board=board)
        self.participants[identity.participant_id] = participant
        self.speakers.add_participant(identity.participant_id)
        if self.audio_locked and not identity.host and identity.role == "meeting":
            self._set_muted(identity.participant_id, True)  # rejoining does not escape a mute
        if self._stop_ticking is None:
            self._stop_ticking = ticker_for(SPEAKER_WINDOW_S).every(
                SPEAKER_WINDOW_S, self._housekeeping
            )
        self._emit("participant_joined", identity.participant_id, role=identity.role)
        self._broadcast_participants()
        return participant

    def _new_participant(
        self, identity: ParticipantIdentity, notify: Notify, *, board: bool
    ) -> Participant:
        layout = media_layout(identity.role, room_kind=self.kind, board=board, limits=self.limits)
        return Participant(
            identity,
            layout,
            configuration=self._configuration,
            notify=notify,
            on_audio_level=self.speakers.add_level,
            on_report=self._on_receiver_report,
        )

    async def negotiate(self, participant: Participant, offer_sdp: str) -> str:
        self._check_member(participant)
        try:
            answer = await participant.negotiate(offer_sdp)
        except NegotiationError:
            if not participant.negotiated:
                await self._reset(participant)
            raise
        for track in participant.published.values():
            track.taps.extend(self._packet_taps)
            self._emit(
                "publisher_joined",
                participant.participant_id,
                source=track.source,
                media=track.kind,
            )
        if participant.role == "lead" and not self._lesson_started:
            self._lesson_started = True
            self._emit("lesson_started", participant.participant_id)
        self._reassign()
        return answer

    async def _reset(self, participant: Participant) -> None:
        """A failed offer leaves aiortc's state unclear: start the connection afresh."""
        board = "board" in participant.published
        fresh = self._new_participant(participant.identity, participant.notify, board=board)
        fresh.hand = participant.hand
        # the subscriber's "low"/"auto" choice (``video_quality``) outlives the reset
        fresh.set_quality(participant.quality, primary_video_slot(fresh.layout))
        if self.participants.get(participant.participant_id) is participant:
            self.participants[participant.participant_id] = fresh
        await participant.close()
        participant.replacement = fresh

    async def leave(self, participant: Participant) -> None:
        current = self.participants.get(participant.participant_id)
        if current is not participant:
            participant = getattr(participant, "replacement", None) or participant
            if self.participants.get(participant.participant_id) is not participant:
                await participant.close()
                return
        await self._remove(participant, reason="left")

    async def _remove(self, participant: Participant, *, reason: str) -> None:
        pid = participant.participant_id
        self.participants.pop(pid, None)
        if reason != "replaced":
            self.speakers.remove_participant(pid)
            if pid in self.accepted_hands:
                self.accepted_hands.remove(pid)
            self.inspect_requests.pop(pid, None)
            for inspector, target in list(self.inspect_requests.items()):
                if target == pid:
                    del self.inspect_requests[inspector]
            if not self.audio_locked:
                self._set_muted(pid, False)
            meeting_changed = pid in (self.spotlight, self.screen_sharer)
            if self.spotlight == pid:
                self.spotlight = None
            if self.screen_sharer == pid:
                self.screen_sharer = None
            if meeting_changed:
                self._broadcast_meeting()
        for track in participant.published.values():
            if participant.negotiated:
                self._emit("publisher_left", pid, source=track.source, reason=reason)
        self._emit("participant_left", pid, role=participant.role, reason=reason)
        if reason == "replaced":
            participant.notify(
                {"v": 1, "type": "closed", "code": "replaced", "message": "该教室已在别处重新连接"}
            )
        await participant.close()
        if reason != "replaced":
            self._reassign()
            self._broadcast_participants()

    def _check_member(self, participant: Participant) -> None:
        if self.participants.get(participant.participant_id) is not participant:
            raise RoomError("您已不在该课堂中", code="not_in_room")

    # -- hands and inspection ---------------------------------------------------------

    def raise_hand(self, participant: Participant) -> None:
        self._check_member(participant)
        if participant.role not in ("remote", "meeting"):
            raise RoomError("只有远端教室或参会教师可以举手", code="not_allowed")
        if participant.hand == "none":
            participant.hand = "raised"
            self._emit("hand_raised", participant.participant_id)
            self._broadcast_participants()

    def lower_hand(self, participant: Participant, target_id: str | None = None) -> None:
        """Lower one's own hand, or (a meeting's host) someone else's."""
        self._check_member(participant)
        target = participant
        if target_id is not None and target_id != participant.participant_id:
            self._check_host(participant)
            target = self._meeting_target(target_id)
        self._set_hand_none(target, "hand_lowered", by=participant.participant_id)

    def accept_hand(self, lead: Participant, target_id: str) -> None:
        target = self._hand_target(lead, target_id)
        if target.hand == "accepted":
            return
        if len(self.accepted_hands) >= self.limits.hand_audio_slots:
            raise RoomError("同时发言的教室已满，请先结束一个发言", code="hands_full")
        target.hand = "accepted"
        self.accepted_hands.append(target_id)
        self._emit("hand_accepted", target_id, by=lead.participant_id)
        self._reassign()
        self._broadcast_participants()

    def revoke_hand(self, lead: Participant, target_id: str) -> None:
        target = self._hand_target(lead, target_id)
        self._set_hand_none(target, "hand_revoked", by=lead.participant_id)

    def _hand_target(self, lead: Participant, target_id: str) -> Participant:
        self._check_member(lead)
        if lead.role != "lead":
            raise RoomError("只有主讲教室可以管理发言", code="not_allowed")
        target = self.participants.get(target_id)
        if target is None or target.role != "remote":
            raise RoomError("找不到该远端教室", code="unknown_participant")
        return target

    def _set_hand_none(self, participant: Participant, kind: RoomEventKind, *, by: str) -> None:
        if participant.hand == "none":
            return
        was_accepted = participant.hand == "accepted"
        participant.hand = "none"
        if was_accepted:
            self.accepted_hands.remove(participant.participant_id)
        self._emit(kind, participant.participant_id, by=by)
        if was_accepted:
            self._reassign()
        self._broadcast_participants()

    def inspect(self, inspector: Participant, target_id: str | None) -> None:
        self._check_member(inspector)
        if inspector.role != "inspector":
            raise RoomError("只有巡课人员可以查看远端教室", code="not_allowed")
        if target_id is None:
            self.inspect_requests.pop(inspector.participant_id, None)
        else:
            target = self.participants.get(target_id)
            if target is None or target.role == "inspector":
                raise RoomError("找不到该教室", code="unknown_participant")
            self.inspect_requests[inspector.participant_id] = target_id
        self._reassign()

    # -- meeting host controls --------------------------------------------------------

    def _check_host(self, participant: Participant) -> None:
        self._check_member(participant)
        if self.kind != "meeting" or not participant.identity.host:
            raise RoomError("只有主持人可以这样操作", code="not_host")

    def _meeting_target(self, target_id: str) -> Participant:
        target = self.participants.get(target_id)
        if target is None or target.role != "meeting":
            raise RoomError("找不到该参会教师", code="unknown_participant")
        return target

    def _set_muted(self, participant_id: str, muted: bool) -> bool:
        """Hold back (or forward again) a participant's audio; True if that changed."""
        if muted == (participant_id in self.muted):
            return False
        if muted:
            self.muted.add(participant_id)
            self.speakers.ignored.add(participant_id)
        else:
            self.muted.discard(participant_id)
            self.speakers.ignored.discard(participant_id)
        return True

    def mute_all(self, host: Participant, *, lock: bool = False) -> None:
        """Stop forwarding everyone's audio but the hosts'. With ``lock`` nobody may unmute
        themselves until the host lets them (``unmute`` with their id, or ``unlock_audio``)."""
        self._check_host(host)
        for participant in self.participants.values():
            if participant.role == "meeting" and not participant.identity.host:
                self._set_muted(participant.participant_id, True)
        self.audio_locked = lock
        self._emit("muted_all", host.participant_id, lock=lock)
        self._reassign()
        self._broadcast_participants()
        self._broadcast_meeting()

    def unlock_audio(self, host: Participant) -> None:
        self._check_host(host)
        if self.audio_locked:
            self.audio_locked = False
            self._broadcast_meeting()

    def mute(self, participant: Participant, target_id: str | None = None) -> None:
        """Mute oneself, or (the host) someone else."""
        self._check_member(participant)
        target = participant
        if target_id is not None and target_id != participant.participant_id:
            self._check_host(participant)
            target = self._meeting_target(target_id)
        elif self.kind != "meeting":
            raise RoomError("只有线上教研可以静音", code="not_allowed")
        if self._set_muted(target.participant_id, True):
            self._reassign()
            self._broadcast_participants()

    def unmute(self, participant: Participant, target_id: str | None = None) -> None:
        """Unmute oneself (refused while the host has locked the audio), or (the host) let
        someone speak: their audio is forwarded again and their hand lowered."""
        self._check_member(participant)
        target = participant
        if target_id is not None and target_id != participant.participant_id:
            self._check_host(participant)
            target = self._meeting_target(target_id)
            self._set_hand_none(target, "hand_lowered", by=participant.participant_id)
        elif self.kind != "meeting":
            raise RoomError("只有线上教研可以取消静音", code="not_allowed")
        elif self.audio_locked and not participant.identity.host:
            raise RoomError("主持人已全体静音，请举手等待主持人允许发言", code="audio_locked")
        if self._set_muted(target.participant_id, False):
            self._reassign()
            self._broadcast_participants()

    def set_spotlight(self, host: Participant, target_id: str | None) -> None:
        """Forward ``target_id``'s camera to everyone whoever speaks (None: back to speakers)."""
        self._check_host(host)
        if target_id is not None:
            self._meeting_target(target_id)
        if self.spotlight == target_id:
            return
        self.spotlight = target_id
        self._emit("spotlight_changed", target_id, by=host.participant_id)
        self._reassign()
        self._broadcast_meeting()

    def share_screen(self, participant: Participant, sharing: bool) -> None:
        """Start (replacing whoever shared before) or stop forwarding one's screen."""
        self._check_member(participant)
        if sharing:
            if "screen" not in participant.published:
                raise RoomError("此连接不能共享屏幕，请重新进入会议", code="not_allowed")
            if self.screen_sharer == participant.participant_id:
                return
            self.screen_sharer = participant.participant_id
        elif self.screen_sharer == participant.participant_id:
            self.screen_sharer = None
        else:
            return
        self._emit("screen_share_changed", participant.participant_id, sharing=sharing)
        self._reassign()
        self._broadcast_meeting()

    async def start_recording(self, host: Participant) -> None:
        """Record the meeting into the library from now (the host, leader or alliance admin);
        everyone is told (``meeting.recording``): they are being recorded."""
        self._check_host(host)
        if self.recording_hooks is None:
            raise RoomError("此会议暂不能录制（服务器未启用录像）", code="recording_unavailable")
        if self.recording:
            raise RoomError("会议已在录制中", code="already_recording")
        self.recording = True  # before the await: a second click meanwhile is refused
        try:
            await self.recording_hooks.start(self, host.identity)
        except BaseException:
            self.recording = False
            raise
        self._emit("recording_started", host.participant_id)
        self._broadcast_meeting()

    async def stop_recording(self, host: Participant) -> None:
        self._check_host(host)
        if not self.recording or self.recording_hooks is None:
            raise RoomError("会议没有在录制", code="not_recording")
        self.recording = False
        self._emit("recording_stopped", host.participant_id)
        self._broadcast_meeting()
        await self.recording_hooks.stop(self)

    def meeting_state(self) -> dict[str, Any]:
        return {
            "v": 1,
            "type": "meeting",
            "spotlight": self.spotlight,
            "screen": self.screen_sharer,
            "audio_locked": self.audio_locked,
            "recording": self.recording,
        }

    def _broadcast_meeting(self) -> None:
        message = self.meeting_state()
        for participant in self.participants.values():
            participant.notify(message)

    # -- recording hooks --------------------------------------------------------------

    def add_packet_tap(self, tap: PacketTap) -> Callable[[], None]:
        """Call ``tap(track, packet)`` for every RTP packet of every published track, now and
        later. Runs on the forwarding path: it must only copy or enqueue."""
        self._packet_taps.append(tap)
        for participant in self.participants.values():
            if participant.negotiated:
                for track in participant.published.values():
                    track.taps.append(tap)

        def remove() -> None:
            if tap in self._packet_taps:
                self._packet_taps.remove(tap)
            for participant in self.participants.values():
                for track in participant.published.values():
                    if tap in track.taps:
                        track.taps.remove(tap)

        return remove

    def published_tracks(self) -> list[PublishedTrack]:
        return [
            track
            for participant in self.participants.values()
            if participant.negotiated
            for track in participant.published.values()
        ]

    # -- routing ----------------------------------------------------------------------

    def _reassign(self) -> None:
        view = RoomView(
            participants=[
                ParticipantView(
                    participant_id=p.participant_id,
                    role=p.identity.role,
                    sources=p.published_sources(),
                    receive_slots=tuple(p.downlinks),
                )
                for p in self.participants.values()
            ],
            accepted_hands=list(self.accepted_hands),
            speaker_order=list(self.speakers.order),
            inspect_requests=dict(self.inspect_requests),
            muted=frozenset(self.muted),
            spotlight=self.spotlight,
            screen_sharer=self.screen_sharer,
        )
        wanted = assign_slots(view, self._assignments)
        for pid, assignment in wanted.items():
            participant = self.participants[pid]
            for slot, key in assignment.items():
                track = None
                if key is not None:
                    publisher = self.participants.get(key[0])
                    track = publisher.published.get(key[1]) if publisher else None
                participant.downlinks[slot].assign(track)
            if assignment != self._assignments.get(pid):
                participant.notify(self._slots_message(participant, assignment))
        self._assignments = wanted

    def _slots_message(self, participant: Participant, assignment: Assignment) -> dict[str, Any]:
        slots = []
        for index, line in enumerate(participant.layout):
            if line.direction != "recv":
                continue
            key = assignment.get(line.name)
            publisher = self.participants.get(key[0]) if key else None
            slots.append(
                {
                    "index": index,
                    "slot": line.name,
                    "participant": key[0] if key else None,
                    "name": publisher.identity.display_name if publisher else None,
                    "source": key[1] if key else None,
                }
            )
        return {"v": 1, "type": "slots", "slots": slots}

    def visible_participants(self) -> list[dict[str, Any]]:
        """The participant list as the class sees it: inspectors are never in it."""
        return [
            {
                "id": p.participant_id,
                "name": p.identity.display_name,
                "role": p.identity.role,
                "campus": p.identity.campus,
                "hand": p.hand,
                "host": p.identity.host,
                "muted": p.participant_id in self.muted,
            }
            for p in self.participants.values()
            if p.identity.role != "inspector"
        ]

    def _broadcast_participants(self) -> None:
        message = {"v": 1, "type": "participants", "participants": self.visible_participants()}
        for participant in self.participants.values():
            participant.notify(message)

    def protection_stats(self) -> list[dict[str, Any]]:
        """Per subscriber: its bandwidth estimate, what each protection level needs, and the
        levels of both ladders (for ``/metrics`` and the logs)."""
        return [
            {
                "participant": p.participant_id,
                "level": p.protection_level,
                "playout_delay_ms": p.playout_delay_ms,
                "loss_level": p.protection.level,
                "bandwidth_level": p.bandwidth.level,
                "estimate_bps": p.bandwidth.estimate_bps,  # the last one the ladder judged
                "needs_bps": [round(need) for need in p.bandwidth_needs()],
                "probing": p.bandwidth.probing,
                "probes": p.bandwidth.probes,
                "probes_failed": p.bandwidth.probes_failed,
            }
            for p in self.participants.values()
            if p.downlinks
        ]

    def _on_receiver_report(self, downlink: Downlink, fraction_lost: int) -> None:
        """A subscriber's RTCP fraction lost covers publisher → SFU → subscriber; the
        protection ladder acts on the subscriber's own leg, so upstream loss is taken out.
        Video is judged by NACK samples instead (``Downlink.nack_loss_sample``): its reports
        count our retransmissions as received and would halve the loss in the average."""
        if downlink.kind == "video":
            return
        source = downlink.source
        upstream = source.upstream_loss() if source is not None else 0.0
        if upstream > 0.0:
            own_leg = 1.0 - (1.0 - fraction_lost / 256) / (1.0 - min(upstream, 0.99))
            fraction_lost = min(max(round(own_leg * 256), 0), 255)
        self._protect(downlink, fraction_lost)

    def _protect(self, downlink: Downlink, fraction_lost: int) -> None:
        for participant in self.participants.values():
            if downlink.slot in participant.downlinks and (
                participant.downlinks[downlink.slot] is downlink
            ):
                level = participant.protection.on_report(fraction_lost, downlink.kind)
                if level is not None:
                    log.info(
                        "loss_protection",
                        room=self.room_id,
                        participant=participant.participant_id,
                        protection_level=level,
                        playout_delay_ms=participant.playout_delay_ms,
                        kind=downlink.kind,
                        sample=fraction_lost,
                        loss=round(participant.protection.loss, 3),
                    )
                    participant.apply_protection_level(
                        participant.protection_level, primary_video_slot(participant.layout)
                    )
                return

    # -- housekeeping -----------------------------------------------------------------

    def _housekeeping(self) -> None:
        """Every ``SPEAKER_WINDOW_S``: the active speaker; every
        ``SENDER_REPORT_INTERVAL_S``, each subscriber slot's counters."""
        ticks_per_report = max(int(SENDER_REPORT_INTERVAL_S / SPEAKER_WINDOW_S), 1)
        self._housekeeping_ticks += 1
        speaker = self.speakers.evaluate()
        if speaker is not None and speaker in self.participants:
            self._emit("speaker_changed", speaker)
            if self.kind == "meeting":
                self._reassign()
                message = {"v": 1, "type": "speaker", "participant": speaker}
                for participant in self.participants.values():
                    participant.notify(message)
        if self._housekeeping_ticks % ticks_per_report == 0:
            now_ms = current_ms()
            now = time.monotonic()
            for participant in list(self.participants.values()):
                participant.bandwidth_tick(now)
                for downlink in participant.downlinks.values():
                    downlink.update_sender_report(now_ms)
                    if downlink.kind == "video" and not downlink.paused:
                        sample = downlink.nack_loss_sample()
                        if sample is not None:
                            self._protect(downlink, sample)
                        self._update_playout_delay(participant, downlink, now, now_ms)

    def _update_playout_delay(
        self, participant: Participant, downlink: Downlink, now: float, now_ms: int
    ) -> None:
        delay = downlink.update_playout_delay(now, now_ms)
        if delay is None:
            return
        judged = downlink.playout
        log.info(
            "playout_delay",
            room=self.room_id,
            participant=participant.participant_id,
            slot=downlink.slot,
            protection_level=participant.protection_level,
            playout_delay_ms=delay,
            upstream_repair_ms=None if judged is None else judged.upstream_repair_ms,
            rtt_ms=None if downlink.rtt_ms is None else round(downlink.rtt_ms),
        )

    def _emit(self, kind: RoomEventKind, participant_id: str | None, **detail: Any) -> None:
        self.events.emit(
            RoomEvent(kind=kind, room_id=self.room_id, participant_id=participant_id, detail=detail)
        )

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._stop_ticking is not None:
            self._stop_ticking()
            self._stop_ticking = None
        for participant in list(self.participants.values()):
            participant.notify({"v": 1, "type": "closed"})
            await participant.close()
        self.participants.clear()
        if self._lesson_started:
            self._emit("lesson_ended", None)
        if self.kind == "meeting":
            self.recording = False
            self._emit("room_closed", None)  # a recording still running stops with the room
        await self.events.close()
