// The online 教研 meeting /research/sessions/{id}/meeting: everyone publishes camera and
// microphone through the SFU, the active speaker (or the spotlit teacher, or a shared screen)
// is shown large, and the host mutes all, spotlights, lowers hands and records (everyone then
// sees 录制中). The SFU enforces the host's controls; this page only asks for them (protocol:
// streaming/signaling.py).
import { el, LessonConnection, videoTile } from "./lesson-client.js";

const STATE_TEXT = {
  connecting: "正在连接…",
  live: "会议进行中",
  reconnecting: "正在重新连接…",
  replaced: "已在别处进入会议",
  error: "无法进入会议",
  stopped: "已离开",
};

const root = document.getElementById("meeting");
const view = root.querySelector("#meeting-view");
const inspector = root.dataset.role === "inspector";
const connection = new LessonConnection({
  socketPath: `/ws/research/${root.dataset.sessionId}`,
  room: root.dataset.room,
  publish: !inspector,
  board: !inspector, // the screen-share line
});
window.tongkeMeeting = connection; // for tests and support: the RTCPeerConnection is .pc

function button(text, onClick, attributes = {}) {
  const node = el("button", { type: "button", class: "small", text, ...attributes });
  node.addEventListener("click", onClick);
  return node;
}

// -- the frame of the page -------------------------------------------------------------------

const status = el("span", { class: "lv-status", role: "status", "aria-live": "polite", "data-testid": "meeting-state" });
// Everyone sees when the meeting is being recorded into the library (they are in it).
const recordingBadge = el("span", { class: "mt-recording", role: "status", hidden: true, "data-testid": "recording", text: "● 录制中" });
const notice = el("p", { class: "lv-notice", role: "alert", hidden: true });
const unlock = el("button", { type: "button", class: "lv-unlock", hidden: true, text: "点击开启声音" });
const leave = button("离开会议", () => {
  stopSharing();
  connection.stop();
  window.location.assign("/research");
}, { class: "secondary small" });
const micButton = button("关闭麦克风", toggleMic, { "aria-pressed": "false", "data-testid": "mic" });
const cameraButton = button("关闭摄像头", toggleCamera, { "aria-pressed": "false" });
const screenButton = button("共享屏幕", toggleScreen, { "aria-pressed": "false" });
const handButton = button("举手", toggleHand, { "aria-pressed": "false" });
const controls = el("div", { class: "mt-controls", "aria-label": "我的设备" });
if (!inspector) controls.append(micButton, cameraButton, screenButton, handButton);
const stage = el("div", { class: "mt-stage", "data-testid": "tiles" });
const hostPanel = el("aside", { class: "mt-host", hidden: true, "aria-labelledby": "host-title" });
const people = el("ul", { class: "lv-people", "data-testid": "people", "aria-label": "参会教师" });
const audioBox = el("div", { hidden: true });
view.replaceChildren(
  el("div", { class: "lv-head" }, status, recordingBadge, unlock, leave),
  notice,
  controls,
  stage,
  hostPanel,
  el("h2", { text: "参会教师" }),
  people,
  audioBox,
);

const muteAll = button("全体静音", () => connection.command("mute_all"), { "data-testid": "mute-all" });
const muteAllLocked = button("全体静音并禁止自行开麦", () => connection.command("mute_all", { lock: true }));
const unlockAudio = button("允许自行开麦", () => connection.command("unlock_audio"), { hidden: true });
const startRecording = button("开始录制", () => connection.command("start_recording"), { "data-testid": "start-recording" });
const stopRecording = button("停止录制", () => connection.command("stop_recording"), { hidden: true, "data-testid": "stop-recording" });
hostPanel.append(
  el("h2", { id: "host-title", text: "主持人" }),
  el("div", { class: "mt-controls" }, muteAll, muteAllLocked, unlockAudio, startRecording, stopRecording),
);

// -- state -----------------------------------------------------------------------------------

const tracks = new Map(); // receive slot -> MediaStreamTrack
const tiles = new Map(); // participant id -> {figure, video, caption, placeholder, track}
const audios = new Map(); // receive slot -> <audio>
let screenTrack = null;
let cameraOff = false;

function showNotice(message) {
  notice.textContent = message;
  notice.hidden = false;
}

function me() {
  return connection.me();
}

function slotOf(participant, prefix) {
  return connection.slots.find((s) => s.participant === participant && s.slot.startsWith(prefix));
}

function tileFor(participant) {
  let tile = tiles.get(participant.id);
  if (!tile) {
    const { figure, video, label } = videoTile(
      { class: "lv-tile mt-tile", "data-participant": participant.id },
      "",
      { hidden: true },
    );
    const placeholder = el("div", { class: "mt-placeholder" });
    video.after(placeholder);
    tile = { figure, video, caption: label, placeholder, track: null };
    tiles.set(participant.id, tile);
  }
  return tile;
}

function showTrack(tile, track) {
  if (tile.track !== track) {
    tile.track = track;
    tile.video.srcObject = track ? new MediaStream([track]) : null;
  }
  tile.video.hidden = !track;
  tile.placeholder.hidden = Boolean(track);
}

function render() {
  const mine = me();
  const list = connection.participants;
  const meeting = connection.meeting || {};
  const large = meeting.spotlight || connection.speaker;
  const seen = new Set();
  const figures = [];

  // A shared screen (someone else's) is the largest tile of all.
  const screenSlot = connection.slots.find((s) => s.slot === "screen_share" && s.participant);
  if (screenSlot && tracks.get("screen_share")) {
    const screen = tileFor({ id: "screen" });
    screen.figure.dataset.slot = "screen_share";
    screen.caption.textContent = `${screenSlot.name} 的屏幕`;
    showTrack(screen, tracks.get("screen_share"));
    screen.figure.classList.add("mt-large");
    figures.push(screen.figure);
    seen.add("screen");
  }
  for (const participant of list) {
    seen.add(participant.id);
    const tile = tileFor(participant);
    const own = mine && participant.id === mine.id;
    let track = null;
    if (own) {
      track = connection.localStream ? connection.localStream.getVideoTracks()[0] || null : null;
    } else {
      const slot = slotOf(participant.id, "speaker_video");
      track = slot ? tracks.get(slot.slot) || null : null;
    }
    showTrack(tile, track);
    const tags = [];
    if (participant.host) tags.push("主持人");
    if (participant.muted) tags.push("已静音");
    if (participant.hand === "raised") tags.push("✋ 举手");
    if (meeting.spotlight === participant.id) tags.push("聚焦");
    tile.caption.textContent = `${participant.name}${own ? "（我）" : ""}${tags.length ? " · " + tags.join(" · ") : ""}`;
    tile.placeholder.textContent = participant.name;
    tile.figure.classList.toggle("mt-large", !screenSlot && participant.id === large && !own);
    tile.figure.toggleAttribute("data-speaking", participant.id === connection.speaker);
    figures.push(tile.figure);
  }
  // The large tile first, then the others in join order.
  figures.sort((a, b) => Number(b.classList.contains("mt-large")) - Number(a.classList.contains("mt-large")));
  stage.replaceChildren(...figures);
  for (const id of [...tiles.keys()]) if (!seen.has(id)) tiles.delete(id);

  // My controls reflect what the SFU says about me.
  if (mine) {
    micButton.textContent = mine.muted ? "打开麦克风" : "关闭麦克风";
    micButton.setAttribute("aria-pressed", String(mine.muted));
    const audio = connection.localStream && connection.localStream.getAudioTracks()[0];
    if (audio) audio.enabled = !mine.muted;
    handButton.textContent = mine.hand === "raised" ? "放下手" : "举手";
    handButton.setAttribute("aria-pressed", String(mine.hand === "raised"));
  }
  screenButton.disabled = !connection.senders.get("screen") || !navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia;

  // The people list, with the host's buttons per teacher.
  hostPanel.hidden = !connection.host;
  unlockAudio.hidden = !meeting.audio_locked;
  recordingBadge.hidden = !meeting.recording;
  startRecording.hidden = Boolean(meeting.recording);
  stopRecording.hidden = !meeting.recording;
  people.replaceChildren(
    ...list.map((participant) => {
      const own = mine && participant.id === mine.id;
      const item = el("li", { "data-person": participant.id },
        el("span", { text: participant.name }),
        el("span", { class: "mt-tags", text: [participant.host && "主持人", participant.muted && "已静音", participant.hand === "raised" && "举手"].filter(Boolean).join(" · ") }),
      );
      if (connection.host && !own) {
        const spotlit = meeting.spotlight === participant.id;
        const actions = el("span", { class: "mt-actions" });
        actions.append(button(spotlit ? "取消聚焦" : "聚焦", () =>
          connection.command("spotlight", { participant: spotlit ? null : participant.id })));
        actions.append(participant.muted
          ? button("允许发言", () => connection.command("unmute", { participant: participant.id }))
          : button("静音", () => connection.command("mute", { participant: participant.id })));
        if (participant.hand === "raised") {
          actions.append(button("放下手", () => connection.command("lower_hand", { participant: participant.id })));
        }
        item.append(actions);
      }
      return item;
    }),
  );
}

// -- my devices ------------------------------------------------------------------------------

function toggleMic() {
  const mine = me();
  if (!mine) return;
  connection.command(mine.muted ? "unmute" : "mute");
}

function toggleCamera() {
  const video = connection.localStream && connection.localStream.getVideoTracks()[0];
  if (!video) return;
  cameraOff = !cameraOff;
  video.enabled = !cameraOff;
  cameraButton.textContent = cameraOff ? "打开摄像头" : "关闭摄像头";
  cameraButton.setAttribute("aria-pressed", String(cameraOff));
}

function toggleHand() {
  const mine = me();
  if (!mine) return;
  connection.command(mine.hand === "raised" ? "lower_hand" : "raise_hand");
}

async function toggleScreen() {
  if (screenTrack) {
    stopSharing();
    return;
  }
  const sender = connection.senders.get("screen");
  if (!sender) return;
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 10 } }, audio: false });
    screenTrack = stream.getVideoTracks()[0];
  } catch {
    showNotice("没有共享屏幕（未选择或浏览器不允许）。");
    return;
  }
  screenTrack.addEventListener("ended", stopSharing);
  await sender.replaceTrack(screenTrack);
  connection.command("share_screen", { sharing: true });
  screenButton.textContent = "停止共享";
  screenButton.setAttribute("aria-pressed", "true");
}

function stopSharing() {
  if (!screenTrack) return;
  const track = screenTrack;
  screenTrack = null;
  track.stop();
  const sender = connection.senders.get("screen");
  if (sender) sender.replaceTrack(null).catch(() => {});
  connection.command("share_screen", { sharing: false });
  screenButton.textContent = "共享屏幕";
  screenButton.setAttribute("aria-pressed", "false");
}

// -- what the connection says ----------------------------------------------------------------

function playAudio(audio) {
  audio.play().catch(() => {
    unlock.hidden = false; // autoplay with sound needs a click on this browser
  });
}

unlock.addEventListener("click", () => {
  unlock.hidden = true;
  for (const audio of audios.values()) playAudio(audio);
});

connection.addEventListener("state", ({ detail: { state, message } }) => {
  root.dataset.state = state;
  view.dataset.state = state;
  const text = STATE_TEXT[state] || state;
  status.textContent = message && state !== "live" ? `${text}（${message}）` : text;
  if (state === "live") notice.hidden = true;
  if (state === "error" || state === "replaced") showNotice(message || text);
  if (state === "reconnecting") {
    tracks.clear();
    screenTrack = null; // a new connection: the share has to be started again
    screenButton.textContent = "共享屏幕";
    screenButton.setAttribute("aria-pressed", "false");
  }
});
connection.addEventListener("track", ({ detail: { slot, kind, track } }) => {
  tracks.set(slot, track);
  if (kind === "audio") {
    let audio = audios.get(slot);
    if (!audio) {
      audio = el("audio", { autoplay: true });
      audio.dataset.slot = slot;
      audios.set(slot, audio);
      audioBox.append(audio);
    }
    audio.srcObject = new MediaStream([track]);
    playAudio(audio);
  }
  render();
});
connection.addEventListener("notice", ({ detail }) => showNotice(detail.message));
for (const event of ["joined", "participants", "slots", "meeting", "speaker", "local"]) {
  connection.addEventListener(event, render);
}
window.addEventListener("pagehide", () => connection.stop());
connection.start();
