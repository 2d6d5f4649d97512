// The replay player: HLS (hls.js, vendored at build time) with a 清晰度 menu, thumbnail
// previews over the timeline, speed, chapters, resume where the viewer stopped; for teachers
// the timestamped 评语 (markers on the timeline and a threaded list) and the 评课 rubric form.
import { ApiError, api, clearFormErrors, showFormError } from "./api.js";

const root = document.getElementById("replay");
const recordingId = root.dataset.recording;
const video = document.getElementById("video");
const canReview = root.dataset.canReview === "yes";
const canTakePart = root.dataset.canTakePart === "yes";
const REPORT_EVERY_S = 10;
const HLS_MODULE = "/static/vendor/hls.mjs";

let duration = Number(root.dataset.duration) || 0;
let comments = [];

export function formatMoment(value) {
  const whole = Math.max(0, Math.floor(Number(value) || 0));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const seconds = whole % 60;
  const mm = String(minutes).padStart(2, "0");
  const ss = String(seconds).padStart(2, "0");
  return hours ? `${hours}:${mm}:${ss}` : `${mm}:${ss}`;
}

function element(tag, { text, className, attrs } = {}, ...children) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

// --- playback: seek, speed, clock, resume --------------------------------------------------
function seek(seconds) {
  if (!video) return;
  video.currentTime = Math.min(Number(seconds) || 0, duration || Number(seconds) || 0);
  highlight(seconds);
}

function updateClock() {
  const now = video.currentTime || 0;
  document.getElementById("clock").textContent =
    `${formatMoment(now)} / ${duration ? formatMoment(duration) : "—"}`;
  const at = document.getElementById("comment-at");
  if (at) at.textContent = formatMoment(now);
  const progress = document.getElementById("timeline-progress");
  if (progress && duration) progress.style.width = `${Math.min(100, (100 * now) / duration)}%`;
}

let lastReported = -1;

async function reportPosition({ keepalive = false } = {}) {
  if (!video) return;
  const position_s = Math.round((video.currentTime || 0) * 10) / 10;
  if (position_s === lastReported) return;
  lastReported = position_s;
  const path = `/api/recordings/${recordingId}/position`;
  if (keepalive) {
    // The page is going away: fire and forget, the browser finishes the request.
    const meta = document.querySelector('meta[name="csrf-token"]');
    fetch(path, {
      method: "POST",
      keepalive: true,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": meta ? meta.content : "" },
      body: JSON.stringify({ position_s }),
    }).catch(() => {});
    return;
  }
  try {
    await api(path, { method: "POST", body: { position_s } });
  } catch {
    lastReported = -1; // try again at the next report
  }
}

function setUpPlayer() {
  if (!video) return;
  const speed = document.getElementById("speed");
  speed.addEventListener("change", () => {
    video.playbackRate = Number(speed.value) || 1;
  });
  video.addEventListener("ratechange", () => {
    if (String(video.playbackRate) !== speed.value) speed.value = String(video.playbackRate);
  });
  video.addEventListener("loadedmetadata", () => {
    if (Number.isFinite(video.duration) && video.duration > 0 && !duration) {
      duration = video.duration;
      renderMarkers();
    }
    const start = root.dataset.start === "" ? NaN : Number(root.dataset.start);
    const resume = Number(root.dataset.position);
    if (Number.isFinite(start) && video.currentTime < 1) {
      // a link to a moment (a search hit in a comment) wins over the resume point
      video.currentTime = duration ? Math.min(start, duration) : start;
      highlight(start);
      document.getElementById("resume-status").textContent = `已跳到 ${formatMoment(start)}`;
    } else if (resume > 1 && (!duration || resume < duration - 2) && video.currentTime < 1) {
      video.currentTime = resume;
      document.getElementById("resume-status").textContent =
        `已从上次停下的 ${formatMoment(resume)} 处继续`;
    }
    updateClock();
  });
  let sinceReport = 0;
  let lastTime = 0;
  video.addEventListener("timeupdate", () => {
    updateClock();
    const now = video.currentTime;
    if (!video.paused && now > lastTime) sinceReport += now - lastTime;
    lastTime = now;
    if (sinceReport >= REPORT_EVERY_S) {
      sinceReport = 0;
      reportPosition();
    }
  });
  video.addEventListener("pause", () => reportPosition());
  video.addEventListener("seeked", () => {
    lastTime = video.currentTime;
    updateClock();
  });
  window.addEventListener("pagehide", () => reportPosition({ keepalive: true }));
  for (const button of document.querySelectorAll("button.seek[data-seek]")) {
    button.addEventListener("click", () => seek(button.dataset.seek));
  }
  // Keyboard: "[" and "]" step five seconds when focus is not in a form field.
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea, select")) return;
    if (event.key === "[" || event.key === "]") {
      seek(Math.max(0, video.currentTime + (event.key === "]" ? 5 : -5)));
    }
  });
  updateClock();
}

// --- source: hls.js, native HLS or the progressive file -------------------------------------
let hls = null;
let levelOf = {}; // 清晰度 value -> hls.js level index

function useFallback() {
  const at = video.currentTime || 0;
  video.removeAttribute("src");
  video.replaceChildren();
  const source = element("source", {
    attrs: { src: video.dataset.fallback, type: video.dataset.fallbackType },
  });
  video.append(source);
  video.dataset.player = "progressive";
  document.getElementById("quality-box").hidden = true;
  video.load();
  if (at > 0) video.addEventListener("loadedmetadata", () => { video.currentTime = at; }, { once: true });
}

function markLevel(index) {
  const name = Object.keys(levelOf).find((key) => levelOf[key] === index);
  if (name) video.dataset.level = name;
}

// hls.js wherever Media Source Extensions work (it gives the 清晰度 menu and the adaptive
// choice); the browser's own HLS where they do not (iOS); else the MP4/WebM.
async function attachSource() {
  const url = root.dataset.hls;
  if (!video || !url) return;
  let Hls = null;
  try {
    ({ default: Hls } = await import(HLS_MODULE));
  } catch {
    Hls = null; // not vendored on this server: the native player or the file
  }
  const quality = document.getElementById("quality");
  if (Hls && Hls.isSupported()) {
    hls = new Hls({ capLevelToPlayerSize: false });
    hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
      // the renditions are named by their folder (recordings/processing.py: main/, low/)
      levelOf = {};
      data.levels.forEach((level, index) => {
        const folder = String(level.uri || level.url).match(/(main|low)\/index\.m3u8/);
        if (folder) levelOf[folder[1]] = index;
      });
      document.getElementById("quality-box").hidden = data.levels.length < 2;
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => markLevel(data.level));
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      hls.destroy();
      hls = null;
      useFallback();
    });
    quality.addEventListener("change", () => {
      if (!hls) return;
      // an explicit choice switches now (the buffer is flushed); 自动 lets hls.js adapt
      hls.currentLevel = quality.value === "auto" ? -1 : levelOf[quality.value];
    });
    video.dataset.player = "hls.js";
    hls.loadSource(url);
    hls.attachMedia(video);
    return;
  }
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.dataset.player = "native-hls";
    video.src = url;
    const variant = (name) => url.replace(/[^/]+$/, `${name}/index.m3u8`);
    const variants = { auto: url, main: variant("main"), low: variant("low") };
    document.getElementById("quality-box").hidden = false;
    quality.addEventListener("change", () => {
      const at = video.currentTime;
      const playing = !video.paused;
      video.src = variants[quality.value];
      video.dataset.level = quality.value;
      video.addEventListener("loadedmetadata", () => {
        video.currentTime = at;
        if (playing) video.play().catch(() => {});
      }, { once: true });
    });
    return;
  }
  useFallback();
}

// --- thumbnail previews over the timeline ---------------------------------------------------
function parseThumbnails(text, base) {
  const cues = [];
  const seconds = (stamp) => stamp.split(":").reduce((sum, part) => sum * 60 + Number(part), 0);
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length - 1; i += 1) {
    const timing = lines[i].match(/^([\d:.]+)\s+-->\s+([\d:.]+)/);
    const tile = timing && lines[i + 1].match(/^(.+)#xywh=(\d+),(\d+),(\d+),(\d+)$/);
    if (!tile) continue;
    cues.push({
      start: seconds(timing[1]),
      end: seconds(timing[2]),
      sprite: new URL(tile[1], base).href,
      x: Number(tile[2]),
      y: Number(tile[3]),
      w: Number(tile[4]),
      h: Number(tile[5]),
    });
  }
  return cues;
}

async function setUpThumbnails() {
  const url = root.dataset.thumbnails;
  const timeline = document.getElementById("timeline");
  const preview = document.getElementById("thumb-preview");
  if (!url || !timeline || !preview) return;
  let cues = [];
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return;
    cues = parseThumbnails(await response.text(), new URL(url, window.location.href));
  } catch {
    return; // previews are a nicety: the player works without them
  }
  if (!cues.length) return;
  timeline.classList.add("has-thumbs");
  const image = preview.querySelector(".thumb-image");
  const label = preview.querySelector(".thumb-time");
  timeline.addEventListener("mousemove", (event) => {
    const box = timeline.getBoundingClientRect();
    const share = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    const at = share * (duration || cues[cues.length - 1].end);
    const cue = cues.find((c) => at >= c.start && at < c.end) || cues[cues.length - 1];
    image.style.width = `${cue.w}px`;
    image.style.height = `${cue.h}px`;
    image.style.backgroundImage = `url("${cue.sprite}")`;
    image.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
    label.textContent = formatMoment(at);
    preview.style.left = `${Math.min(box.width - cue.w / 2, Math.max(cue.w / 2, share * box.width))}px`;
    preview.dataset.at = String(Math.round(at * 10) / 10);
    preview.hidden = false;
  });
  timeline.addEventListener("mouseleave", () => {
    preview.hidden = true;
  });
}

// --- comments ------------------------------------------------------------------------------
function highlight(seconds) {
  const target = Number(seconds);
  for (const node of document.querySelectorAll(".comment[data-at], .comment-marker")) {
    node.classList.toggle("active", Math.abs(Number(node.dataset.at) - target) < 0.05);
  }
}

function renderMarkers() {
  const box = document.getElementById("markers");
  if (!box) return;
  box.replaceChildren();
  if (!duration) return;
  for (const thread of comments) {
    const marker = element("button", {
      className: "comment-marker",
      attrs: {
        type: "button",
        "data-at": String(thread.at_seconds),
        "data-testid": "comment-marker",
        "aria-label": `跳到 ${formatMoment(thread.at_seconds)} 的评语（${thread.author_name}）`,
        title: `${formatMoment(thread.at_seconds)} ${thread.author_name}：${thread.body.slice(0, 40)}`,
      },
    });
    marker.style.left = `${Math.min(100, (100 * thread.at_seconds) / duration)}%`;
    marker.addEventListener("click", () => {
      seek(thread.at_seconds);
      document.getElementById(`comment-${thread.id}`)?.scrollIntoView({ block: "nearest" });
    });
    box.append(marker);
  }
}

function textForm({ id, label, value = "", submitLabel, onSubmit }) {
  const form = element("form", { attrs: { novalidate: "" } });
  const alert = element("p", {
    className: "error form-alert",
    attrs: { role: "alert", tabindex: "-1" },
  });
  alert.hidden = true;
  const area = element("textarea", { attrs: { id, name: "body", rows: "2", maxlength: "2000" } });
  area.value = value;
  const slot = element("p", {
    className: "field-error",
    attrs: { "data-error-for": "body", "data-control": id, id: `${id}-error` },
  });
  slot.hidden = true;
  area.setAttribute("aria-describedby", `${id}-error`);
  const submit = element("button", { text: submitLabel, attrs: { type: "submit" } });
  form.append(alert, element("label", { text: label, attrs: { for: id } }), area, slot, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    if (!area.value.trim()) {
      showFormError(form, new ApiError("评语不能为空", { field: "body" }));
      return;
    }
    submit.disabled = true;
    try {
      await onSubmit(area.value);
    } catch (error) {
      showFormError(form, error);
    } finally {
      submit.disabled = false;
    }
  });
  return { form, area };
}

function renderComment(comment, { isReply = false } = {}) {
  const item = element("li", {
    className: "comment",
    attrs: { id: `comment-${comment.id}`, "data-at": String(comment.at_seconds), "data-testid": isReply ? "reply" : "comment" },
  });
  const head = element("div", { className: "comment-head" });
  if (!isReply) {
    const when = element("button", {
      text: formatMoment(comment.at_seconds),
      className: "link seek",
      attrs: { type: "button", "aria-label": `跳到 ${formatMoment(comment.at_seconds)}` },
    });
    when.addEventListener("click", () => seek(comment.at_seconds));
    head.append(when);
  }
  const posted = new Date(comment.created_at);
  head.append(
    element("strong", { text: comment.author_name }),
    element("span", {
      className: "muted",
      text: `${posted.toLocaleString("zh-CN", { hour12: false })}${comment.edited_at ? "（已编辑）" : ""}`,
    }),
  );
  const body = element("p", { className: "comment-body", text: comment.body });
  const actions = element("div", { className: "comment-actions" });
  const slot = element("div");
  item.append(head, body, actions, slot);

  if (canTakePart) {
    const replyButton = element("button", {
      text: "回复",
      className: "link",
      attrs: { type: "button", "aria-expanded": "false" },
    });
    replyButton.addEventListener("click", () => {
      const { form, area } = textForm({
        id: `reply-${comment.id}`,
        label: `回复 ${comment.author_name}`,
        submitLabel: "发送回复",
        onSubmit: async (text) => {
          await api(`/api/review-comments/${comment.id}/replies`, {
            method: "POST",
            body: { body: text },
          });
          await loadComments();
          announce("回复已发送");
        },
      });
      slot.replaceChildren(form);
      replyButton.setAttribute("aria-expanded", "true");
      area.focus();
    });
    actions.append(replyButton);
  }
  if (comment.can_edit) {
    const editButton = element("button", { text: "编辑", className: "link", attrs: { type: "button" } });
    editButton.addEventListener("click", () => {
      const { form, area } = textForm({
        id: `edit-${comment.id}`,
        label: "修改评语",
        value: comment.body,
        submitLabel: "保存修改",
        onSubmit: async (text) => {
          await api(`/api/review-comments/${comment.id}`, { method: "PATCH", body: { body: text } });
          await loadComments();
          announce("评语已修改");
        },
      });
      slot.replaceChildren(form);
      area.focus();
    });
    actions.append(editButton);
  }
  if (comment.can_delete) {
    const deleteButton = element("button", { text: "删除", className: "link", attrs: { type: "button" } });
    deleteButton.addEventListener("click", async () => {
      if (deleteButton.dataset.confirm !== "yes") {
        deleteButton.dataset.confirm = "yes";
        deleteButton.textContent = comment.replies?.length ? "确认删除（含回复）" : "确认删除";
        return;
      }
      try {
        await api(`/api/review-comments/${comment.id}`, { method: "DELETE" });
        await loadComments();
        announce("评语已删除");
      } catch (error) {
        announce(error.message, true);
      }
    });
    actions.append(deleteButton);
  }
  if (!isReply && comment.replies?.length) {
    const replies = element("ol", { className: "replies", attrs: { "aria-label": "回复" } });
    for (const reply of comment.replies) replies.append(renderComment(reply, { isReply: true }));
    item.append(replies);
  }
  return item;
}

function announce(message, isError = false) {
  const status = document.getElementById("comments-status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

async function loadComments() {
  comments = await api(`/api/recordings/${recordingId}/comments`);
  const list = document.getElementById("comments");
  list.replaceChildren(...comments.map((comment) => renderComment(comment)));
  const replies = comments.reduce((sum, c) => sum + c.replies.length, 0);
  document.getElementById("comment-count").textContent = comments.length
    ? `（${comments.length} 条${replies ? `，回复 ${replies} 条` : ""}）`
    : "（暂无）";
  renderMarkers();
}

function setUpCommentForm() {
  const form = document.getElementById("comment-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    const area = document.getElementById("comment-body");
    if (!area.value.trim()) {
      showFormError(form, new ApiError("评语不能为空", { field: "body" }));
      return;
    }
    const at_seconds = Math.round((video ? video.currentTime : 0) * 10) / 10;
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const created = await api(`/api/recordings/${recordingId}/comments`, {
        method: "POST",
        body: { body: area.value, at_seconds },
      });
      area.value = "";
      await loadComments();
      highlight(created.at_seconds);
      announce(`已在 ${formatMoment(created.at_seconds)} 处添加评语`);
    } catch (error) {
      showFormError(form, error);
    } finally {
      submit.disabled = false;
    }
  });
}

// --- rubric and scores ---------------------------------------------------------------------
function renderCriteria(rubric, mine) {
  const box = document.getElementById("criteria");
  if (!box) return;
  const given = new Map((mine?.rubric_id === rubric.id ? mine.scores : []).map((s) => [s.criterion_id, s.score]));
  box.replaceChildren(
    ...rubric.criteria.map((criterion) => {
      const id = `score-${criterion.id}`;
      const input = element("input", {
        attrs: {
          id,
          name: id,
          type: "number",
          inputmode: "decimal",
          min: "0",
          max: String(criterion.max_score),
          step: "0.5",
          required: "",
          "data-criterion": String(criterion.id),
          "aria-describedby": `${id}-hint`,
        },
      });
      if (given.has(criterion.id)) input.value = String(given.get(criterion.id));
      return element(
        "div",
        { className: "criterion" },
        element("label", { text: `${criterion.name}（满分 ${criterion.max_score}）`, attrs: { for: id } }),
        input,
        element("p", {
          className: "hint",
          text: `${criterion.description}${criterion.weight !== 1 ? `（权重 ${criterion.weight}）` : ""}`,
          attrs: { id: `${id}-hint` },
        }),
      );
    }),
  );
  const remark = document.getElementById("remark");
  if (remark && mine) remark.value = mine.remark;
}

function renderSummary(summary) {
  const box = document.getElementById("score-summary");
  const { rubric, observations, averages, overall_average: overall } = summary;
  document.getElementById("rubric-name").textContent = `${rubric.name} · 第 ${rubric.version} 版`;
  const current = observations.filter((o) => o.rubric_id === rubric.id);
  if (!observations.length) {
    box.replaceChildren(element("p", { className: "muted", text: "还没有人评分。" }));
  } else {
    const head = element(
      "tr",
      {},
      element("th", { text: "评课人", attrs: { scope: "col" } }),
      ...rubric.criteria.map((c) => element("th", { text: c.name, attrs: { scope: "col" } })),
      element("th", { text: "综合得分", attrs: { scope: "col" } }),
    );
    const rows = current.map((o) =>
      element(
        "tr",
        { attrs: { "data-testid": "score-row" } },
        element("th", { text: o.evaluator_name, attrs: { scope: "row" } }),
        ...rubric.criteria.map((c) =>
          element("td", { text: String(o.scores.find((s) => s.criterion_id === c.id)?.score ?? "—") }),
        ),
        element("td", { text: String(o.overall) }),
      ),
    );
    const average = element(
      "tr",
      {},
      element("th", { text: "平均", attrs: { scope: "row" } }),
      ...averages.map((a) => element("td", { text: a.average === null ? "—" : String(a.average) })),
      element("td", { text: overall === null ? "—" : String(overall), attrs: { "data-testid": "overall-average" } }),
    );
    const table = element(
      "table",
      { className: "score-table" },
      element("caption", { text: `评分汇总（${observations.length} 人）` }),
      element("thead", {}, head),
      element("tbody", {}, ...rows, average),
    );
    const older = observations.length - current.length;
    box.replaceChildren(
      element("div", { className: "table-wrap" }, table),
      ...(older ? [element("p", { className: "hint", text: `另有 ${older} 份按旧版评价表的评分，见导出的报告。` })] : []),
    );
  }
  document.getElementById("linked-sessions").textContent = summary.sessions.length
    ? `已在以下教研活动中评议：${summary.sessions.map((s) => `${s.day} ${s.group_name}（${s.topic || "无主题"}）`).join("；")}`
    : "尚未关联教研活动。";
}

async function loadEvaluations({ fillForm = false } = {}) {
  const summary = await api(`/api/recordings/${recordingId}/evaluations`);
  if (fillForm) renderCriteria(summary.rubric, summary.mine);
  renderSummary(summary);
  return summary;
}

function setUpScoreForm() {
  const form = document.getElementById("score-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    const status = document.getElementById("score-status");
    status.textContent = "";
    const inputs = [...form.querySelectorAll("input[data-criterion]")];
    for (const input of inputs) {
      if (input.value.trim() === "") {
        const label = form.querySelector(`label[for="${input.id}"]`).textContent;
        showFormError(form, new ApiError(`请填写“${label}”的得分`, { field: "scores" }));
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
    }
    const body = {
      scores: inputs.map((input) => ({
        criterion_id: Number(input.dataset.criterion),
        score: Number(input.value),
      })),
      remark: document.getElementById("remark").value,
    };
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const saved = await api(`/api/recordings/${recordingId}/evaluations/mine`, {
        method: "PUT",
        body,
      });
      status.textContent = `评分已提交，综合得分 ${saved.overall}`;
      await loadEvaluations();
    } catch (error) {
      showFormError(form, error);
      if (error.status === 409) await loadEvaluations({ fillForm: true });
    } finally {
      submit.disabled = false;
    }
  });
}

function setUpLinkForm() {
  const form = document.getElementById("link-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    const select = document.getElementById("research-session");
    const status = document.getElementById("link-status");
    status.textContent = "";
    try {
      await api(`/api/recordings/${recordingId}/research-sessions`, {
        method: "POST",
        body: { research_session_id: Number(select.value) },
      });
      status.textContent = `已关联：${select.selectedOptions[0].textContent.trim()}`;
      await loadEvaluations();
    } catch (error) {
      showFormError(form, error);
    }
  });
}

// --- a 教研 meeting's preview, until its composed version is ready ---------------------------
const PREVIEW_POLL_MS = 5000;

// While the preview plays (the mics mixed, the host's camera), ask every few seconds whether
// the composition finished; then play the composed file from the same moment, same state.
function watchPreview() {
  if (root.dataset.meetingVersion !== "preview" || !video) return;
  const banner = document.getElementById("meeting-preview");
  const timer = setInterval(async () => {
    let shown;
    try {
      shown = await api(`/api/recordings/${recordingId}`);
    } catch {
      return; // a passing network error: the next poll tries again
    }
    if (shown.meeting_version === "preview" || !shown.media.raw) return;
    clearInterval(timer);
    const playing = !video.paused;
    root.dataset.meetingVersion = shown.meeting_version || "composed";
    // a query of its own, so no cached byte of the preview is reused
    video.dataset.fallback = `${shown.media.raw}&version=${root.dataset.meetingVersion}`;
    video.dataset.fallbackType = "video/webm";
    if (shown.duration_s) duration = shown.duration_s;
    useFallback();
    if (playing) video.addEventListener("loadedmetadata", () => video.play(), { once: true });
    banner.textContent = "已切换到完整版（含共享屏幕与发言人切换），播放位置不变";
    banner.dataset.state = "composed";
  }, PREVIEW_POLL_MS);
}

// --- start ---------------------------------------------------------------------------------
setUpPlayer();
attachSource();
setUpThumbnails();
watchPreview();
if (canReview) {
  setUpCommentForm();
  setUpScoreForm();
  setUpLinkForm();
  Promise.all([loadComments(), loadEvaluations({ fillForm: true })]).catch((error) => {
    announce(error.message || "评课数据加载失败", true);
  });
}
