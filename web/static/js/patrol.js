// 巡课 wall: every live synchronized lesson and online 教研 meeting the principal or bureau
// may look in on, each as a muted tile joined invisibly (inspector role); click 收听 to hear
// one room at a time.
import { api } from "./api.js";
import { LessonConnection } from "./lesson-client.js";

const POLL_MS = 5_000;
const STATE_TEXT = { connecting: "连接中…", live: "直播中", reconnecting: "重新连接中…", error: "无法巡视" };

const groups = new Map(
  JSON.parse(document.getElementById("patrol-groups").textContent).map((g) => [g.sync_group_id ?? g.id, g]),
);
const wall = document.getElementById("patrol-wall");
const empty = document.getElementById("patrol-empty");
const status = document.getElementById("patrol-status");
const schoolFilter = document.getElementById("filter-school");
const subjectFilter = document.getElementById("filter-subject");
const tiles = new Map(); // sync group id or meeting room -> {node, connection, audios}
let live = [];
let listeningTo = null;
let pollTimer = null;

window.tongkePatrol = tiles; // for tests and support: each tile's .connection.pc

function text(tag, className, value) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.textContent = value;
  return node;
}

const isMeeting = (lesson) => lesson.kind === "meeting";
// a lesson's tile is keyed by its sync group id, a meeting's by its room ("research-3")
const roomOf = (lesson) => (isMeeting(lesson) ? lesson.room : lesson.sync_group_id);

function matches(lesson) {
  const school = schoolFilter.value;
  const subject = subjectFilter.value;
  if (isMeeting(lesson)) return !school && (!subject || lesson.subject === subject);
  const info = groups.get(lesson.sync_group_id);
  if (!info) return !school && !subject;
  return (!school || info.schools.includes(school)) && (!subject || info.subject === subject);
}

function describe(lesson) {
  if (isMeeting(lesson)) {
    return {
      title: `线上教研 · ${lesson.subject} · ${lesson.group}`,
      meta: `主持：${lesson.host || "未定"}${lesson.topic ? `；主题：${lesson.topic}` : ""}`,
    };
  }
  const info = groups.get(lesson.sync_group_id);
  if (!info) return { title: lesson.code, meta: "" };
  return {
    title: `${info.kind} · ${info.subject} · ${info.teacher}老师`,
    meta: `主讲：${info.lead}；远端：${info.remotes.join("、")}`,
  };
}

function makeTile(lesson) {
  const { title, meta } = describe(lesson);
  const node = document.createElement("article");
  node.className = "patrol-tile";
  if (isMeeting(lesson)) node.dataset.room = lesson.room;
  else node.dataset.group = lesson.sync_group_id;
  node.dataset.testid = "patrol-tile";
  node.setAttribute("data-testid", "patrol-tile");
  const heading = text("h2", "", title);
  const figure = document.createElement("figure");
  figure.className = "lv-tile";
  const video = document.createElement("video");
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  const caption = text("figcaption", "", "连接中…");
  figure.append(video, caption);
  const metaLine = text("p", "patrol-meta muted", meta);
  const people = text("p", "patrol-meta", "");
  people.dataset.testid = "patrol-people";
  people.setAttribute("data-testid", "patrol-people");
  // a recording disk running out, or full (the lesson itself goes on)
  const alert = text("p", "patrol-alert error", "");
  alert.setAttribute("role", "alert");
  alert.setAttribute("data-testid", "patrol-recording-alert");
  const listen = text("button", "small", "收听");
  listen.type = "button";
  listen.setAttribute("aria-pressed", "false");
  listen.setAttribute("aria-label", `收听：${title}`);
  const open = text("a", "button secondary small", "进入巡课");
  open.href = isMeeting(lesson)
    ? `/research/sessions/${lesson.research_session_id}/meeting`
    : `/lessons/${lesson.sync_group_id}`;
  const actions = document.createElement("div");
  actions.className = "actions";
  actions.append(listen, open);
  node.append(heading, figure, metaLine, people, alert, actions);

  const id = roomOf(lesson);
  const connection = isMeeting(lesson)
    ? new LessonConnection({ socketPath: lesson.websocket, room: lesson.room, publish: false })
    : new LessonConnection({ groupId: lesson.sync_group_id, publish: false });
  // a lesson shows its lead classroom, a meeting its current speaker (or the spotlit teacher)
  const shownSlot = isMeeting(lesson) ? "speaker_video_0" : "lead_camera";
  const audios = [];
  const tile = { node, connection, audios, listen, people, alert, meeting: isMeeting(lesson) };
  connection.addEventListener("state", (event) => {
    caption.textContent = STATE_TEXT[event.detail.state] || "";
    node.dataset.state = event.detail.state;
  });
  connection.addEventListener("track", (event) => {
    const { slot, kind, track } = event.detail;
    if (kind === "video" && slot === shownSlot) {
      video.srcObject = new MediaStream([track]);
    } else if (kind === "audio") {
      const audio = document.createElement("audio");
      audio.autoplay = true;
      audio.muted = listeningTo !== id;
      audio.srcObject = new MediaStream([track]);
      audio.hidden = true;
      audios.push(audio);
      node.append(audio);
    }
  });
  connection.addEventListener("participants", () => renderPeople(tile));
  listen.addEventListener("click", () => setListening(listeningTo === id ? null : id));
  connection.start();
  return tile;
}

function renderPeople(tile) {
  const list = tile.connection.participants;
  if (tile.meeting) {
    const hosts = list.filter((p) => p.host).map((p) => p.name);
    tile.people.textContent = `参会教师 ${list.length} 人：${list.map((p) => p.name).join("、")}${hosts.length ? `；主持：${hosts.join("、")}` : ""}`;
    return;
  }
  const hands = list.filter((p) => p.hand !== "none").map((p) => `${p.name}（${p.hand === "accepted" ? "发言中" : "举手"}）`);
  tile.people.textContent = `在线教室 ${list.length} 个：${list.map((p) => p.name).join("、")}${hands.length ? `；${hands.join("、")}` : ""}`;
}

function setListening(roomId) {
  listeningTo = roomId;
  for (const [id, tile] of tiles) {
    const on = id === roomId;
    tile.node.dataset.listening = String(on);
    tile.listen.textContent = on ? "停止收听" : "收听";
    tile.listen.setAttribute("aria-pressed", String(on));
    for (const audio of tile.audios) {
      audio.muted = !on;
      if (on) audio.play().catch(() => {});
    }
  }
}

function render() {
  const wanted = new Map(live.filter(matches).map((lesson) => [roomOf(lesson), lesson]));
  for (const [id, tile] of tiles) {
    if (!wanted.has(id)) {
      tile.connection.stop();
      tile.node.remove();
      tiles.delete(id);
      if (listeningTo === id) listeningTo = null;
    }
  }
  for (const [id, lesson] of wanted) {
    let tile = tiles.get(id);
    if (!tile) {
      tile = makeTile(lesson);
      tiles.set(id, tile);
      wall.append(tile.node);
    }
    const alertText = lesson.recording_alert ? `录像告警：${lesson.recording_alert}` : "";
    if (tile.alert.textContent !== alertText) tile.alert.textContent = alertText;
    tile.alert.hidden = !alertText;
  }
  empty.hidden = tiles.size > 0;
  empty.textContent = live.length ? "没有符合筛选条件的直播课堂。" : "当前没有正在进行的同步课堂或线上教研。";
}

async function poll() {
  clearTimeout(pollTimer);
  try {
    live = await api("/api/live-lessons");
    status.textContent = `正在直播 ${live.length} 节`;
    render();
  } catch (error) {
    status.textContent = error.message;
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

schoolFilter.addEventListener("change", render);
subjectFilter.addEventListener("change", render);
window.addEventListener("pagehide", () => {
  for (const tile of tiles.values()) tile.connection.stop();
});
poll();
