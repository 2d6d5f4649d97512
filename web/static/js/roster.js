// 导入花名册: upload the workbook (multipart), then show the counts or every bad row.
import { clearFormErrors, showFormError, ApiError } from "./api.js";

const form = document.getElementById("roster-form");
const school = document.getElementById("school");
const file = document.getElementById("file");
const createAccounts = document.getElementById("create_accounts");
const password = document.getElementById("default_password");
const button = document.getElementById("roster-upload");
const status = document.getElementById("roster-status");
const result = document.getElementById("roster-result");
const counts = document.getElementById("roster-counts");
const extra = document.getElementById("roster-extra");
const errors = document.getElementById("roster-errors");
const errorRows = document.getElementById("roster-error-rows");
const SHEETS = { rooms: "教室", classes: "班级", teachers: "教师", students: "学生" };

function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach((text, index) => {
    const cell = document.createElement(index === 0 ? "th" : "td");
    if (index === 0) cell.scope = "row";
    cell.textContent = String(text);
    tr.append(cell);
  });
  return tr;
}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content || "";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form);
  result.hidden = true;
  errors.hidden = true;
  if (!file.files.length) {
    showFormError(form, new ApiError("请选择要上传的花名册文件", { field: "file" }));
    return;
  }
  const body = new FormData();
  body.append("file", file.files[0]);
  body.append("create_accounts", createAccounts.checked ? "true" : "false");
  if (password.value) body.append("default_password", password.value);
  button.disabled = true;
  status.className = "status";
  status.textContent = "正在上传并检查…";
  let response;
  try {
    response = await fetch(`/api/schools/${school.value}/roster`, {
      method: "POST",
      body,
      headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json" },
      credentials: "same-origin",
    });
  } catch {
    status.textContent = "";
    showFormError(form, new ApiError("无法连接服务器，请检查网络后重试"));
    button.disabled = false;
    return;
  }
  button.disabled = false;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.ok) {
    counts.replaceChildren(
      ...Object.entries(SHEETS).map(([key, label]) => row([label, data[key].created, data[key].updated])),
    );
    extra.textContent = `新建年级 ${data.grades_created} 个，开通账号 ${data.accounts_created} 个。`;
    result.hidden = false;
    status.textContent = "导入完成。";
    return;
  }
  status.textContent = "";
  const error = (data && data.error) || {};
  if (error.code === "import_rejected" && Array.isArray(error.detail)) {
    errorRows.replaceChildren(
      ...error.detail.map((item) => row([item.sheet, item.row, item.column, item.message])),
    );
    errors.hidden = false;
  }
  showFormError(
    form,
    new ApiError(error.message || `导入失败（${response.status}）`, {
      status: response.status,
      field: error.field || null,
      code: error.code || null,
    }),
  );
});
