// 作息时间: edit a campus's bell schedule in place (PATCH /api/bell-schedules/{id}).
import { ApiError, api } from "./api.js";

function addMinutes(hhmm, minutes) {
  const [h, m] = hhmm.split(":").map(Number);
  const total = Math.min(h * 60 + m + minutes, 23 * 60 + 59);
  return `${String(Math.floor(total / 60)).padStart(2, "0")}:${String(total % 60).padStart(2, "0")}`;
}

function periodRow(scheduleId, number, start, end) {
  const row = document.createElement("tr");
  const head = document.createElement("th");
  head.scope = "row";
  head.textContent = `第${number}节`;
  row.append(head);
  for (const [name, value, label] of [
    ["start", start, "上课"],
    ["end", end, "下课"],
  ]) {
    const cell = document.createElement("td");
    const id = `bell-${scheduleId}-${number}-${name}`;
    const caption = document.createElement("label");
    caption.className = "sr-only";
    caption.htmlFor = id;
    caption.textContent = `第${number}节${label}`;
    const input = document.createElement("input");
    input.type = "time";
    input.id = id;
    input.name = name;
    input.value = value;
    input.required = true;
    cell.append(caption, input);
    row.append(cell);
  }
  return row;
}

for (const form of document.querySelectorAll(".bell-form")) {
  const id = form.dataset.schedule;
  const rows = form.querySelector(".bell-rows");
  const alert = form.querySelector(".form-alert");
  const status = form.querySelector(".status");

  function showError(message) {
    alert.textContent = message;
    alert.hidden = false;
    alert.focus();
  }

  form.querySelector('[data-action="add"]').addEventListener("click", () => {
    const last = rows.lastElementChild;
    const lastEnd = last ? last.querySelector('input[name="end"]').value : "08:00";
    const start = addMinutes(lastEnd || "08:00", 10);
    rows.append(periodRow(id, rows.children.length + 1, start, addMinutes(start, 40)));
    rows.lastElementChild.querySelector("input").focus();
  });
  form.querySelector('[data-action="remove"]').addEventListener("click", () => {
    if (rows.children.length > 1) rows.lastElementChild.remove();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    alert.hidden = true;
    status.textContent = "";
    const periods = [...rows.children].map((row) => ({
      start: row.querySelector('input[name="start"]').value,
      end: row.querySelector('input[name="end"]').value,
    }));
    const blank = periods.findIndex((p) => !p.start || !p.end);
    if (blank >= 0) {
      showError(`第 ${blank + 1} 节的上课或下课时间没有填写`);
      return;
    }
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      await api(`/api/bell-schedules/${id}`, { method: "PATCH", body: { periods } });
      status.textContent = "已保存。修改作息后请重新求解课表。";
    } catch (error) {
      showError(error instanceof ApiError ? error.message : String(error));
    } finally {
      button.disabled = false;
    }
  });
}
