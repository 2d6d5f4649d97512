// Classroom terminal kiosk: paired once by code, then shows its room's day with a countdown.
import { ApiError, api, clearFormErrors, formatTime, showFormError } from "./api.js";
import { LessonConnection } from "./lesson-client.js";
import { mountLessonView } from "./lesson-view.js";

const STORAGE_KEY = "tongke.terminal";
const REFRESH_MS = 60_000;
const RETRY_MS = [2_000, 5_000, 10_000, 30_000];
const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const DAY_LABELS = { mon: "周一", tue: "周二", wed: "周三", thu: "周四", fri: "周五", sat: "周六", sun: "周日" };
const SYNC_LABELS = { sync: "同步课堂", delivered: "专递课堂", master: "名师课堂" };
const LIVE_POLL_MS = 10_000;
const LEAD_EARLY_MS = 3 * 60_000; // the lead classroom opens its lesson a little before the bell
const LEAD_GONE_MS = 60_000; // a remote classroom leaves once the lead has been gone this long
const REFUSED_MS = 60_000; // after a refused join, wait before trying that lesson again

const $ = (id) => document.getElementById(id);
const pairSection = $("pair");
const pairForm = $("pair-form");
const kiosk = $("kiosk");
const connection = $("connection");

let device = readDevice();
let week = null;
let refreshTimer = null;
let failures = 0;
let live = null; // the lesson joined: {groupId, connection, view, leadGoneSince}
let liveTimer = null;
const refused = new Map(); // group id -> when joining it was refused

function readDevice() {
  try {
    const stored = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    return stored && stored.token && stored.room_id ? stored : null;
  } catch {
    return null;
  }
}

function setConnection(state, text) {
  connection.dataset.state = state;
  connection.textContent = text;
}

function showPair(notice) {
  clearTimeout(refreshTimer);
  leaveLesson();
  week = null;
  kiosk.hidden = true;
  pairSection.hidden = false;
  $("room-name").textContent = "未配对的教室终端";
  setConnection("idle", "");
  clearFormErrors(pairForm);
  if (notice) showFormError(pairForm, new ApiError(notice));
  $("code").focus();
}

function showKiosk() {
  pairSection.hidden = true;
  kiosk.hidden = false;
  $("room-name").textContent = device.name;
  if (!week) $("now-lesson").textContent = "正在读取课表…";
}

pairForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(pairForm);
  const code = $("code").value.replace(/[\s-]/g, "").toUpperCase();
  if (code.length !== 8) {
    showFormError(pairForm, new ApiError("配对码是 8 位字母或数字", { field: "code" }));
    return;
  }
  const submit = pairForm.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const paired = await api("/api/devices/pair", {
      method: "POST",
      body: { code },
      anonymous: true,
    });
    device = {
      token: paired.access_token,
      room_id: paired.room_id,
      terminal_id: paired.terminal_id,
      name: paired.name,
    };
    localStorage.setItem(STORAGE_KEY, JSON.stringify(device));
    pairForm.reset();
    showKiosk();
    await load();
  } catch (error) {
    showFormError(pairForm, error);
  } finally {
    submit.disabled = false;
  }
});

$("unpair").addEventListener("click", () => {
  if (!window.confirm("解除配对后需要管理员重新生成配对码，确定吗？")) return;
  localStorage.removeItem(STORAGE_KEY);
  device = null;
  showPair();
});

async function load() {
  clearTimeout(refreshTimer);
  if (!device) return;
  // No navigator.onLine shortcut: a school LAN without internet (or a host with only
  // loopback) reads as "offline" to the browser while the server is perfectly reachable.
  try {
    week = await api(`/api/timetable/week?room_id=${device.room_id}`, { token: device.token });
    failures = 0;
    lastList = "";
    setConnection("online", "已连接");
    render();
    refreshTimer = setTimeout(load, REFRESH_MS);
    if (!liveTimer) checkLive();
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      localStorage.removeItem(STORAGE_KEY);
      device = null;
      showPair("此终端的配对已失效（可能已在别处重新配对），请重新输入配对码。");
      return;
    }
    offline();
  }
}

function offline() {
  const wait = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
  failures += 1;
  setConnection("offline", `未连接 · 重新连接中…（${Math.round(wait / 1000)} 秒后重试）`);
  refreshTimer = setTimeout(load, wait);
}

window.addEventListener("offline", () => {
  if (device) {
    clearTimeout(refreshTimer);
    offline();
  }
});
window.addEventListener("online", () => {
  if (device) {
    failures = 0;
    setConnection("offline", "重新连接中…");
    load();
  }
});

function at(day, hhmmss) {
  const [h, m, s] = hhmmss.split(":").map(Number);
  const moment = new Date(day);
  moment.setHours(h, m, s || 0, 0);
  return moment;
}

function lessonsOn(dayName) {
  return (week?.entries || []).filter((e) => e.day === dayName && e.start && e.end);
}

/** The lesson on now (if any), the next one (up to a week ahead), and which day to list. */
function plan(now) {
  const todays = lessonsOn(DAYS[now.getDay()]);
  const current = todays.find((e) => at(now, e.start) <= now && now < at(now, e.end)) || null;
  const later = todays.find((e) => at(now, e.start) > now) || null;
  if (current || later) {
    return { current, next: later, nextAt: later && at(now, later.start), shown: todays, title: "今日课表", nextIsToday: true };
  }
  for (let ahead = 1; ahead <= 7; ahead += 1) {
    const day = new Date(now);
    day.setDate(now.getDate() + ahead);
    const lessons = lessonsOn(DAYS[day.getDay()]);
    if (lessons.length) {
      const label = DAY_LABELS[DAYS[day.getDay()]];
      const title = todays.length ? `今日课程已结束 · ${label}课表` : `今天没有课 · ${label}课表`;
      return { current: null, next: lessons[0], nextAt: at(day, lessons[0].start), shown: lessons, title, nextIsToday: false };
    }
  }
  return { current: null, next: null, nextAt: null, shown: [], title: "今日课表", nextIsToday: true };
}

function syncText(sync) {
  if (!sync) return "";
  const kind = SYNC_LABELS[sync.kind] || "同步课堂";
  if (sync.role === "lead") {
    return `${kind} · 本教室主讲，${sync.classes.length - 1} 个远端教室同步听课（${sync.classes.slice(1).join("、")}）`;
  }
  return `${kind} · 远端教室，主讲：${sync.lead_teacher}老师（${sync.lead_class}），共 ${sync.classes.length} 个教室`;
}

function duration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const days = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const clock = `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
  return days ? `${days} 天 ${clock}` : clock;
}

function lessonLine(e) {
  return `${e.subject} · ${e.class_name} · ${e.teacher}老师`;
}

let lastList = "";

function render() {
  const now = new Date();
  $("clock").textContent = now.toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit" });
  if (!week) return;
  const { current, next, nextAt, shown, title, nextIsToday } = plan(now);
  const focus = current || next;
  $("now-title").textContent = current ? "正在上课" : "下一节";
  const when = focus && !current && !nextIsToday ? `${DAY_LABELS[focus.day]} ` : "";
  $("now-lesson").textContent = focus
    ? `${when}${formatTime(focus.start)} ${lessonLine(focus)}`
    : "本周没有课";
  $("countdown-label").textContent = current ? "距下课" : next ? "距上课" : "";
  $("countdown-time").textContent = current
    ? duration(at(now, current.end) - now)
    : next
      ? duration(nextAt - now)
      : "";
  $("now-sync").textContent = focus ? syncText(focus.sync) : "";
  $("now-sync").hidden = !(focus && focus.sync);
  $("today-title").textContent = title;
  const key = JSON.stringify([title, current?.period, next?.period, shown.length]);
  if (key === lastList) return;
  lastList = key;
  const list = $("today-list");
  list.replaceChildren(
    ...shown.map((e) => {
      const item = document.createElement("li");
      item.className = "today-item";
      if (e === current) item.classList.add("current");
      if (e === next && !current) item.classList.add("next");
      if (e.sync) item.classList.add("sync");
      const time = document.createElement("span");
      time.className = "today-time";
      time.textContent = `第${e.period}节 ${formatTime(e.start)}–${formatTime(e.end)}`;
      const what = document.createElement("span");
      what.className = "today-what";
      what.textContent = lessonLine(e);
      item.append(time, what);
      if (e.sync) {
        const badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = syncText(e.sync);
        item.append(badge);
      }
      return item;
    }),
  );
  if (!shown.length) {
    const item = document.createElement("li");
    item.textContent = "本周没有课";
    list.append(item);
  }
}


// --- the live lesson -------------------------------------------------------------------------
// The kiosk joins by itself: a remote classroom when its lesson's lead classroom is live
// (GET /api/live-lessons lists the rooms this terminal belongs to), the lead classroom at the
// bell of a synchronized lesson it leads (its join opens the room for everyone).

function timetableSync(now) {
  const todays = lessonsOn(DAYS[now.getDay()]).filter((e) => e.sync);
  return (
    todays.find(
      (e) => at(now, e.start).getTime() - LEAD_EARLY_MS <= now.getTime() && now < at(now, e.end),
    ) || null
  );
}

function chooseLesson(lessons, now) {
  const entry = timetableSync(now);
  const wanted = entry ? entry.sync.group_id : null;
  const ok = (id) => !(refused.has(id) && now - refused.get(id) < REFUSED_MS);
  const hasLead = (l) => l.participants.some((p) => p.role === "lead");
  const remote = lessons.filter((l) => l.my_role === "remote" && hasLead(l) && ok(l.sync_group_id));
  const found = remote.find((l) => l.sync_group_id === wanted) || remote[0];
  if (found) return found.sync_group_id;
  if (entry && entry.sync.role === "lead" && ok(wanted)) return wanted;
  return null;
}

async function checkLive() {
  clearTimeout(liveTimer);
  liveTimer = setTimeout(checkLive, LIVE_POLL_MS);
  if (!device) return;
  let lessons;
  try {
    lessons = await api("/api/live-lessons", { token: device.token });
  } catch {
    return; // the timetable poll reports the connection state
  }
  const now = new Date();
  if (live) {
    const mine = lessons.find((l) => l.sync_group_id === live.groupId);
    const leadHere = mine && mine.participants.some((p) => p.role === "lead");
    if (live.connection.role === "remote" && !leadHere) {
      live.leadGoneSince = live.leadGoneSince || now.getTime();
      if (now.getTime() - live.leadGoneSince > LEAD_GONE_MS) leaveLesson();
    } else {
      live.leadGoneSince = null;
    }
    if (live && live.connection.role === "lead" && !timetableSync(now) && !mine?.participants.some((p) => p.role === "remote")) {
      leaveLesson();
    }
    return;
  }
  const groupId = chooseLesson(lessons, now);
  if (groupId !== null) joinLesson(groupId);
}

function joinLesson(groupId) {
  const connection = new LessonConnection({ groupId, token: device.token });
  const root = $("live-view");
  const view = mountLessonView(root, connection);
  live = { groupId, connection, view, leadGoneSince: null };
  window.tongkeLesson = connection; // for tests and support: the RTCPeerConnection is .pc
  connection.addEventListener("state", (event) => {
    const { state } = event.detail;
    if (state === "error" || state === "replaced") {
      refused.set(groupId, Date.now());
      setTimeout(() => {
        if (live && live.connection === connection) leaveLesson();
      }, 10_000);
    }
  });
  $("live-idle").hidden = true;
  root.hidden = false;
  document.querySelector(".kiosk-main").dataset.live = "";
  connection.start();
}

function leaveLesson() {
  if (!live) return;
  const { connection, view } = live;
  live = null;
  connection.stop();
  view.destroy();
  $("live-view").hidden = true;
  $("live-idle").hidden = false;
  delete document.querySelector(".kiosk-main").dataset.live;
}

window.addEventListener("pagehide", leaveLesson);

setInterval(render, 1000);
if (device) {
  showKiosk();
  render();
  load();
} else {
  showPair();
}
