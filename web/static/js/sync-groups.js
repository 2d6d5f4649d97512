// 同步课堂设置: create a group from a lead lesson and matching remote lessons; delete one.
import { ApiError, api, clearFormErrors, showFormError } from "./api.js";

const lessons = JSON.parse(document.getElementById("sync-lessons").textContent);
const term = document.getElementById("term");
const form = document.getElementById("group-form");
const code = document.getElementById("code");
const kind = document.getElementById("kind");
const lead = document.getElementById("lead");
const members = document.getElementById("members");
const status = document.getElementById("groups-status");
const empty = document.getElementById("groups-empty");
const create = document.getElementById("group-create");

function free(lesson) {
  return lesson.term_id === Number(term.value) && !lesson.grouped;
}

function fillLeads() {
  lead.replaceChildren(
    ...lessons.filter(free).map((lesson) => new Option(lesson.label, lesson.id)),
  );
  fillMembers();
}

function fillMembers() {
  const chosen = lessons.find((lesson) => lesson.id === Number(lead.value));
  members.replaceChildren();
  if (!chosen) return;
  const matching = lessons.filter(
    (lesson) =>
      free(lesson) &&
      lesson.id !== chosen.id &&
      lesson.subject_id === chosen.subject_id &&
      lesson.per_week === chosen.per_week &&
      lesson.campus_id !== chosen.campus_id,
  );
  if (!matching.length) {
    const none = document.createElement("p");
    none.className = "hint";
    none.textContent = "没有可与之同步的课。";
    members.append(none);
  }
  for (const lesson of matching) {
    const label = document.createElement("label");
    label.className = "inline";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = lesson.id;
    box.name = "member_lesson_ids";
    label.append(box, document.createTextNode(lesson.label));
    members.append(label);
  }
}

function showGroupsOfTerm() {
  let shown = 0;
  for (const row of document.querySelectorAll("#groups tbody tr")) {
    row.hidden = row.dataset.term !== term.value;
    if (!row.hidden) shown += 1;
  }
  empty.hidden = shown > 0;
}

term.addEventListener("change", () => {
  showGroupsOfTerm();
  fillLeads();
});
lead.addEventListener("change", fillMembers);
showGroupsOfTerm();
fillLeads();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form);
  const chosen = [...members.querySelectorAll("input:checked")].map((box) => Number(box.value));
  if (!code.value.trim()) {
    showFormError(form, new ApiError("请填写编号", { field: "code" }));
    return;
  }
  if (!chosen.length) {
    showFormError(form, new ApiError("请至少选择一个远端课程", { field: "member_lesson_ids" }));
    return;
  }
  create.disabled = true;
  try {
    await api("/api/sync-groups", {
      method: "POST",
      body: {
        term_id: Number(term.value),
        code: code.value.trim(),
        kind: kind.value,
        lead_lesson_id: Number(lead.value),
        member_lesson_ids: chosen,
      },
    });
    window.location.reload();
  } catch (error) {
    showFormError(form, error);
    create.disabled = false;
  }
});

for (const button of document.querySelectorAll("[data-delete]")) {
  button.addEventListener("click", async () => {
    if (!window.confirm(`删除同步课堂 ${button.dataset.code}？删除后请重新求解课表。`)) return;
    button.disabled = true;
    try {
      await api(`/api/sync-groups/${button.dataset.delete}`, { method: "DELETE" });
      window.location.reload();
    } catch (error) {
      status.textContent = error.message;
      status.className = "status error";
      button.disabled = false;
    }
  });
}
