// Admin tables edited in place: a row's 编辑 button opens its form, 删除 asks first.
// Markup contract (see admin_schools.html, admin_rooms.html, admin_lessons.html):
//   <button data-edit="ID of a hidden row or block holding the form">
//   <form class="row-form" data-api="/api/..." data-method="POST|PATCH" data-done="已保存…">
//     controls with name=field; data-number → a number (empty → left out), checkboxes with
//     data-list="features" value=… → one list; .form-alert and [data-error-for] slots.
//   <button data-delete="/api/..." data-confirm="确定删除…？" data-done="已删除…">
// After a change the page reloads (the server renders the truth) and says what happened.
import { api, clearFormErrors, showFormError } from "./api.js";

const NOTICE_KEY = "tongke-edit-notice";
const notice = document.getElementById("edit-status");

function say(message, isError = false) {
  if (!notice) return;
  notice.textContent = message;
  notice.className = isError ? "status error" : "status";
  if (isError) notice.focus();
}

const carried = sessionStorage.getItem(NOTICE_KEY);
if (carried) {
  sessionStorage.removeItem(NOTICE_KEY);
  say(carried);
}

function reloadSaying(message) {
  sessionStorage.setItem(NOTICE_KEY, message);
  window.location.reload();
}

function body(form) {
  const values = {};
  for (const control of form.elements) {
    if (!control.name || control.disabled) continue;
    if (control.dataset.list) {
      values[control.dataset.list] ??= [];
      if (control.checked) values[control.dataset.list].push(control.value);
    } else if (control.type === "checkbox") {
      values[control.name] = control.checked;
    } else if ("number" in control.dataset) {
      if (control.value.trim() !== "") values[control.name] = Number(control.value);
    } else {
      values[control.name] = control.value.trim();
    }
  }
  return values;
}

for (const button of document.querySelectorAll("[data-edit]")) {
  const target = document.getElementById(button.dataset.edit);
  button.setAttribute("aria-controls", target.id);
  button.setAttribute("aria-expanded", "false");
  button.addEventListener("click", () => {
    target.hidden = !target.hidden;
    button.setAttribute("aria-expanded", String(!target.hidden));
    if (!target.hidden) target.querySelector("input:not([type=hidden]), select")?.focus();
  });
}

for (const cancel of document.querySelectorAll("[data-cancel]")) {
  cancel.addEventListener("click", () => {
    const target = document.getElementById(cancel.dataset.cancel);
    target.hidden = true;
    const opener = document.querySelector(`[data-edit="${target.id}"]`);
    opener?.setAttribute("aria-expanded", "false");
    opener?.focus();
  });
}

for (const form of document.querySelectorAll("form.row-form")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      await api(form.dataset.api, { method: form.dataset.method || "PATCH", body: body(form) });
      reloadSaying(form.dataset.done || "已保存。");
    } catch (error) {
      showFormError(form, error);
    } finally {
      submit.disabled = false;
    }
  });
}

for (const button of document.querySelectorAll("[data-delete]")) {
  button.addEventListener("click", async () => {
    if (!window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    try {
      await api(button.dataset.delete, { method: "DELETE" });
      reloadSaying(button.dataset.done || "已删除。");
    } catch (error) {
      say(error.message, true);
    } finally {
      button.disabled = false;
    }
  });
}
