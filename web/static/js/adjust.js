// 调课: ask the server for the fewest changes that free a teacher on a date; show them,
// apply them as dated changes of that week, list the term's applied ones and revoke them.
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
const applyForm = document.getElementById("apply-form");
const applyButton = document.getElementById("adjust-apply");
const applyStatus = document.getElementById("apply-status");
const reason = document.getElementById("reason");
const appliedRows = document.getElementById("applied-rows");
const appliedEmpty = document.getElementById("applied-empty");
const appliedStatus = document.getElementById("applied-status");
let current = null; // { term, teacherId, plan } of the plan on screen

const STATUS_LABELS = { applied: "已应用", revoked: "已撤销" };

/** The plan as the apply endpoint takes it: each change by lesson, date and period. */
function applyBody(teacherId, plan) {
  return {
    teacher_id: teacherId,
    date: plan.date,
    reason: reason.value.trim(),
    moves: plan.moves.map((m) => ({
      lesson_id: m.lesson_id,
      old_date: m.old.date,
      old_period: m.old.period,
      new_date: m.new.date,
      new_period: m.new.period,
      new_room_code: m.new.room_code,
    })),
    substitutions: plan.substitutions.map((s) => ({
      lesson_id: s.lesson_id,
      date: s.slot.date,
      period: s.slot.period,
      substitute_id: s.substitute_id,
    })),
  };
}

function renderApplied(adjustments) {
  appliedRows.replaceChildren();
  for (const adjustment of adjustments) {
    const row = document.createElement("tr");
    row.dataset.id = adjustment.id;
    cell(row, adjustment.date, true);
    cell(row, adjustment.reason ? `${adjustment.teacher}（${adjustment.reason}）` : adjustment.teacher);
    const items = document.createElement("td");
    const list = document.createElement("ul");
    list.className = "links";
    for (const item of adjustment.items) {
      const entry = document.createElement("li");
      entry.textContent = item.description;
      list.append(entry);
    }
    items.append(list);
    row.append(items);
    cell(row, STATUS_LABELS[adjustment.status] || adjustment.status);
    const actions = document.createElement("td");
    if (adjustment.status === "applied") {
      const revoke = document.createElement("button");
      revoke.type = "button";
      revoke.className = "secondary";
      revoke.textContent = "撤销";
      revoke.setAttribute("aria-label", `撤销 ${adjustment.date} ${adjustment.teacher} 的调课`);
      revoke.addEventListener("click", () => revokeAdjustment(adjustment, revoke));
      actions.append(revoke);
    }
    row.append(actions);
    appliedRows.append(row);
  }
  appliedEmpty.hidden = adjustments.length > 0;
}

async function loadApplied() {
  try {
    const data = await api(`/api/terms/${term.value}/timetable/adjustments`);
    renderApplied(data.adjustments);
  } catch (error) {
    appliedStatus.className = "status error";
    appliedStatus.textContent = error.message;
  }
}

async function revokeAdjustment(adjustment, button) {
  if (!window.confirm(`撤销 ${adjustment.date} ${adjustment.teacher} 的调课？这些日期将恢复原课表。`)) return;
  button.disabled = true;
  appliedStatus.className = "status";
  try {
    await api(`/api/terms/${term.value}/timetable/adjustments/${adjustment.id}`, { method: "DELETE" });
    appliedStatus.textContent = `已撤销 ${adjustment.date} ${adjustment.teacher} 的调课，课表已恢复。`;
    await loadApplied();
  } catch (error) {
    appliedStatus.className = "status error";
    appliedStatus.textContent = error.message;
    button.disabled = false;
  }
}

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
  applyForm.hidden = nothing;
  applyButton.disabled = nothing;
  applyStatus.textContent = "";
  applyStatus.className = "status";
  summary.textContent = nothing
    ? `${plan.teacher} 在 ${plan.date} 没有课，无需调课。`
    : `${plan.teacher} ${plan.date} 请假：调动 ${plan.moved} 节课（其中 ${plan.must_move} 节必须调动），` +
      `代课 ${plan.substitutions.length} 节，用时 ${plan.seconds} 秒。`;
  result.hidden = false;
}

term.addEventListener("change", () => {
  showTeachersOfTerm();
  loadApplied();
});
showTeachersOfTerm();
loadApplied();

applyForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(applyForm);
  if (!current) return;
  applyButton.disabled = true;
  applyStatus.className = "status";
  applyStatus.textContent = "正在核对当前课表并应用…";
  try {
    const stored = await api(`/api/terms/${current.term}/timetable/absence-plan/apply`, {
      method: "POST",
      body: applyBody(current.teacherId, current.plan),
    });
    applyStatus.textContent = `已应用：${stored.date} ${stored.teacher} 的调课（${stored.items.length} 项）。`;
    current = null;
    await loadApplied();
  } catch (error) {
    applyStatus.textContent = "";
    showFormError(applyForm, error);
    applyButton.disabled = false;
  }
});

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
    current = { term: term.value, teacherId: Number(teacher.value), plan };
    render(plan);
  } catch (error) {
    status.textContent = "";
    showFormError(form, error);
  } finally {
    start.disabled = false;
  }
});
