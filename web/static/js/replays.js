// 录像回放: teachers make and edit 单元合集 — name, unit, subject, grade, and the recordings
// they may watch, in the order to watch them. One request saves all of it (POST or PUT
// /api/collections with recording_ids), so a refused recording leaves nothing half-saved.
import { api, clearFormErrors, showFormError } from "./api.js";
import { el } from "./lesson-client.js";

const form = document.getElementById("collection-form");
const heading = document.getElementById("collection-form-title");
const idField = document.getElementById("collection-id");
const titleField = document.getElementById("collection-title");
const unitField = document.getElementById("collection-unit");
const subjectField = document.getElementById("collection-subject");
const gradeField = document.getElementById("collection-grade");
const pick = document.getElementById("collection-pick");
const list = document.getElementById("collection-items");
const empty = document.getElementById("collection-items-empty");
const status = document.getElementById("collection-status");
const newButton = document.getElementById("collection-new");

const titles = new Map(
  [...pick.options].filter((o) => o.value).map((o) => [Number(o.value), o.dataset.title]),
);
let items = []; // recording ids, in order

function drawItems() {
  list.replaceChildren(
    ...items.map((id, index) => {
      const name = titles.get(id) || `录像 ${id}`;
      const move = (delta, text, label) => {
        const target = index + delta;
        const button = el("button", {
          type: "button",
          class: "secondary small",
          text,
          "aria-label": `${label}：${name}`,
          disabled: target < 0 || target >= items.length,
        });
        button.addEventListener("click", () => {
          [items[index], items[target]] = [items[target], items[index]];
          drawItems();
        });
        return button;
      };
      const remove = el("button", { type: "button", class: "secondary small", text: "移除", "aria-label": `移除：${name}` });
      remove.addEventListener("click", () => {
        items.splice(index, 1);
        drawItems();
      });
      return el(
        "li",
        { "data-testid": "collection-item", "data-recording": String(id) },
        el("span", { text: name }),
        " ",
        move(-1, "上移", "上移"),
        move(1, "下移", "下移"),
        remove,
      );
    }),
  );
  empty.hidden = items.length > 0;
}

function open(collection) {
  clearFormErrors(form);
  idField.value = collection ? String(collection.id) : "";
  heading.textContent = collection ? `编辑单元合集：${collection.title}` : "新建单元合集";
  titleField.value = collection ? collection.title : "";
  unitField.value = collection ? collection.unit_name : "";
  subjectField.value = collection && collection.subject_id ? String(collection.subject_id) : "";
  gradeField.value = collection && collection.grade_level ? String(collection.grade_level) : "";
  items = collection ? [...collection.items] : [];
  drawItems();
  form.hidden = false;
  titleField.focus();
}

newButton.addEventListener("click", () => open(null));
for (const button of document.querySelectorAll("[data-collection-edit]")) {
  button.addEventListener("click", () => open(JSON.parse(button.dataset.collectionEdit)));
}
document.getElementById("collection-cancel").addEventListener("click", () => {
  clearFormErrors(form);
  form.hidden = true;
});

document.getElementById("collection-add").addEventListener("click", () => {
  clearFormErrors(form);
  const id = Number(pick.value);
  if (!id) {
    showFormError(form, { message: "请先选择要加入的录像", field: "recording_ids" });
    return;
  }
  if (items.includes(id)) {
    showFormError(form, { message: "这节录像已经在合集中了", field: "recording_ids" });
    return;
  }
  items.push(id);
  pick.value = "";
  drawItems();
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form);
  const body = {
    title: titleField.value.trim(),
    unit_name: unitField.value.trim(),
    subject_id: subjectField.value ? Number(subjectField.value) : null,
    grade_level: gradeField.value ? Number(gradeField.value) : null,
    recording_ids: items,
  };
  if (!body.title) {
    showFormError(form, { message: "请填写合集名称", field: "title" });
    return;
  }
  if (!body.unit_name) {
    showFormError(form, { message: "请填写单元名称", field: "unit_name" });
    return;
  }
  const id = idField.value;
  try {
    await api(id ? `/api/collections/${id}` : "/api/collections", {
      method: id ? "PUT" : "POST",
      body,
    });
  } catch (error) {
    showFormError(form, error);
    return;
  }
  // no fragment: the same URL without one is a full load, so the page shows what was saved
  window.location.assign("/replays?saved=1");
});

for (const button of document.querySelectorAll("[data-collection-delete]")) {
  button.addEventListener("click", async () => {
    if (!window.confirm("确定删除这个单元合集吗？合集中的录像不会被删除。")) return;
    try {
      await api(`/api/collections/${button.dataset.collectionDelete}`, { method: "DELETE" });
    } catch (error) {
      status.textContent = error.message;
      status.focus();
      return;
    }
    window.location.assign("/replays?removed=1");
  });
}

const done = new URLSearchParams(window.location.search);
if (done.get("saved") || done.get("removed")) {
  status.textContent = done.get("saved") ? "单元合集已保存" : "单元合集已删除";
  document.getElementById("collections").scrollIntoView();
}
