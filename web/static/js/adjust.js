// 调课: ask the server for the fewest changes that free a teacher on a date; show them.
import { api, clearFormErrors, showFormError } from "./api.js";

const form = document.getElementById("adjust-form");
const term = document.getElementById("term");
const teacher = document.getElementById("teacher");
const date = document.getElementById("date");
const substitute = document.getElementById("substitute");
const start = document.getElementById("adjust-start");
const status = document.getElementById("adjust-status");
const result = document.getElementById("adjust-result");
const summary = document.getElementById("adjust-summary");
const rows = document.getElementById("adjust-rows");
const notes = document.getElementById("adjust-notes");

function showTeachersOfTerm() {
  let first = null;
  for (const option of teacher.options) {
    option.hidden = option.dataset.term !== term.value;
    if (!option.hidden && first === null) first = option;
  }
  if (teacher.selectedOptions[0]?.hidden && first) teacher.value = first.value;
}

function cell(row, text, header = false) {
  const element = document.createElement(header ? "th" : "td");
  if (header) element.scope = "row";
  element.textContent = text;
  row.append(element);
}

function render(plan) {
  rows.replaceChildren();
  notes.replaceChildren();
  for (const move of plan.moves) {
    const row = document.createElement("tr");
    cell(row, move.school_class, true);
    cell(row, `${move.subject}（${move.teacher}）`);
    cell(row, move.old.label);
    cell(row, move.new.label);
    cell(row, move.old.room === move.new.room ? move.new.room : `${move.old.room} → ${move.new.room}`);
    rows.append(row);
  }
  for (const sub of plan.substitutions) {
    const row = document.createElement("tr");
    cell(row, sub.school_class, true);
    cell(row, sub.subject);
    cell(row, sub.slot.label);
    cell(row, `不调时间，由 ${sub.substitute} 代课`);
    cell(row, sub.slot.room);
    rows.append(row);
  }
  for (const session of plan.missed_sessions) {
    const item = document.createElement("li");
    item.textContent = `教研 ${session}：${plan.teacher} 缺席，活动照常进行`;
    notes.append(item);
  }
  for (const warning of plan.warnings) {
    const item = document.createElement("li");
    item.textContent = `提醒：${warning}`;
    notes.append(item);
  }
  const nothing = plan.moves.length === 0 && plan.substitutions.length === 0;
  summary.textContent = nothing
    ? `${plan.teacher} 在 ${plan.date} 没有课，无需调课。`
    : `${plan.teacher} ${plan.date} 请假：调动 ${plan.moved} 节课（其中 ${plan.must_move} 节必须调动），` +
      `代课 ${plan.substitutions.length} 节，用时 ${plan.seconds} 秒。`;
  result.hidden = false;
}

term.addEventListener("change", showTeachersOfTerm);
showTeachersOfTerm();

document.getElementById("adjust-print").addEventListener("click", () => window.print());

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form);
  if (!date.value) {
    date.setAttribute("aria-invalid", "true");
    status.textContent = "请选择请假日期。";
    status.className = "status error";
    date.focus();
    return;
  }
  start.disabled = true;
  status.className = "status";
  status.textContent = "正在计算调课方案（最多几秒）…";
  result.hidden = true;
  try {
    const plan = await api(`/api/terms/${term.value}/timetable/absence-plan`, {
      method: "POST",
      body: { teacher_id: Number(teacher.value), date: date.value, substitute: substitute.value },
    });
    status.textContent = "调课方案已生成。";
    render(plan);
  } catch (error) {
    status.textContent = "";
    showFormError(form, error);
  } finally {
    start.disabled = false;
  }
});
