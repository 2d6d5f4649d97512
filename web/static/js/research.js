// 教研: the host (or leader, or admin) saves a session's minutes and whether it was held.
import { ApiError, api, clearFormErrors, showFormError } from "./api.js";

for (const form of document.querySelectorAll(".minutes-form")) {
  const alert = form.querySelector(".form-alert");
  const status = form.querySelector(".status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    alert.hidden = true;
    status.textContent = "";
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await api(`/api/research-sessions/${form.dataset.session}/minutes`, {
        method: "POST",
        body: {
          minutes_text: form.querySelector("textarea").value,
          status: form.querySelector("select").value,
        },
      });
      status.textContent = "纪要已保存。";
    } catch (error) {
      alert.textContent = error.message;
      alert.hidden = false;
      alert.focus();
    } finally {
      button.disabled = false;
    }
  });
}

// 教研资料: upload a document to one of the coming sessions (multipart, the page's CSRF token).
const materialForm = document.getElementById("material-form");
if (materialForm) {
  const file = document.getElementById("material-file");
  const target = document.getElementById("material-session");
  const status = document.getElementById("material-status");
  const button = document.getElementById("material-upload");
  materialForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors(materialForm);
    status.textContent = "";
    if (!file.files.length) {
      showFormError(materialForm, new ApiError("请选择要上传的文件", { field: "file" }));
      return;
    }
    const body = new FormData();
    body.append("file", file.files[0]);
    button.disabled = true;
    status.textContent = "正在上传…";
    try {
      const response = await fetch(`/api/research-sessions/${target.value}/materials`, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: {
          Accept: "application/json",
          "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]')?.content || "",
        },
      });
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        const error = (data && data.error) || {};
        throw new ApiError(error.message || `上传失败（${response.status}）`, {
          status: response.status,
          field: error.field || null,
        });
      }
      status.textContent = `已上传「${data.filename}」。`;
      window.setTimeout(() => window.location.reload(), 600);
    } catch (error) {
      status.textContent = "";
      showFormError(materialForm, error instanceof ApiError ? error : new ApiError(String(error)));
    } finally {
      button.disabled = false;
    }
  });
}
