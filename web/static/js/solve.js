// 课表求解: start a background solve, poll its progress, cancel it, summarise the result.
import { ApiError, api, clearFormErrors, showFormError } from "./api.js";

const STATE_LABELS = {
  queued: "排队中",
  running: "求解中",
  complete: "完成",
  failed: "失败",
  cancelled: "已取消",
};
const FINISHED = new Set(["complete", "failed", "cancelled"]);
const POLL_MS = 500;
const STORAGE_KEY = "tongke.solveJob";

const form = document.getElementById("solve-form");
const term = document.getElementById("term");
const timeLimit = document.getElementById("time_limit");
const start = document.getElementById("solve-start");
const cancel = document.getElementById("solve-cancel");
const panel = document.getElementById("solve-job");
const stateText = document.getElementById("solve-state");
const progress = document.getElementById("solve-progress");
const percent = document.getElementById("solve-percent");
const message = document.getElementById("solve-message");
const eta = document.getElementById("solve-eta");
const result = document.getElementById("solve-result");

let jobId = null;
let timer = null;

function showCampusLinks() {
  const alliance = term.selectedOptions[0]?.dataset.alliance;
  for (const item of document.querySelectorAll("#campus-prints li")) {
    item.hidden = item.dataset.alliance !== alliance;
    const link = item.querySelector("a");
    link.href = `${link.dataset.baseHref}&term_id=${term.value}`;
  }
}

function setRunning(running) {
  start.disabled = running;
  term.disabled = running;
  timeLimit.disabled = running;
  cancel.hidden = !running;
}

function render(status) {
  panel.hidden = false;
  stateText.textContent = STATE_LABELS[status.state] || status.state;
  panel.dataset.state = status.state;
  const value = Math.round((status.progress || 0) * 100);
  progress.value = value;
  progress.textContent = `${value}%`;
  percent.textContent = `${value}%`;
  message.textContent = status.state === "failed" ? status.error || status.message : status.message;
  message.className = status.state === "failed" ? "error" : "";
  eta.textContent =
    status.eta_seconds != null && !FINISHED.has(status.state)
      ? `预计还需 ${Math.max(1, Math.round(status.eta_seconds))} 秒`
      : "";
  if (status.state === "complete" && status.result) {
    const r = status.result;
    document.getElementById("result-hard").textContent = r.hard_violations;
    document.getElementById("result-idle").textContent = r.idle_minutes;
    document.getElementById("result-late").textContent = r.late_main;
    document.getElementById("result-stored").textContent = r.stored_lessons;
    document.getElementById("result-seconds").textContent = r.seconds;
    const warnings = r.warnings || [];
    const list = document.getElementById("result-warning-list");
    list.replaceChildren(
      ...warnings.map((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        return item;
      }),
    );
    document.getElementById("result-warnings").hidden = warnings.length === 0;
    result.hidden = false;
  }
}

async function poll() {
  timer = null;
  if (!jobId) return;
  try {
    const status = await api(`/api/jobs/${encodeURIComponent(jobId)}`);
    render(status);
    if (FINISHED.has(status.state)) {
      sessionStorage.removeItem(STORAGE_KEY);
      jobId = null;
      setRunning(false);
      return;
    }
  } catch (error) {
    message.textContent = `${error.message}（正在重试）`;
    if (error.status === 404 || error.status === 403) {
      sessionStorage.removeItem(STORAGE_KEY);
      jobId = null;
      setRunning(false);
      return;
    }
  }
  timer = setTimeout(poll, POLL_MS);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form);
  const seconds = Number(timeLimit.value);
  if (!Number.isFinite(seconds) || seconds < 1 || seconds > 600) {
    showFormError(form, new ApiError("求解时限应在 1 到 600 秒之间", { field: "time_limit" }));
    return;
  }
  setRunning(true);
  result.hidden = true;
  try {
    const job = await api(`/api/terms/${term.value}/timetable/solve`, {
      method: "POST",
      body: { time_limit: seconds },
    });
    jobId = job.job_id;
    sessionStorage.setItem(STORAGE_KEY, jobId);
    render({ state: "queued", progress: 0, message: "已提交，等待开始…" });
    poll();
  } catch (error) {
    setRunning(false);
    showFormError(form, error);
  }
});

cancel.addEventListener("click", async () => {
  if (!jobId) return;
  cancel.disabled = true;
  try {
    const answer = await api(`/api/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
    message.textContent = answer.cancelled ? "正在取消…" : "任务已结束，无法取消";
  } catch (error) {
    message.textContent = error.message;
  } finally {
    cancel.disabled = false;
  }
  if (!timer) poll();
});

term.addEventListener("change", showCampusLinks);
showCampusLinks();
// A reload while solving picks the same job up again.
const resumed = sessionStorage.getItem(STORAGE_KEY);
if (resumed) {
  jobId = resumed;
  setRunning(true);
  poll();
}
