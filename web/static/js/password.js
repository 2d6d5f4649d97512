// Change one's own password (POST /api/auth/password); other sessions end.
import { ApiError, api, clearFormErrors, showFormError } from "./api.js";

const form = document.getElementById("password-form");
const status = document.getElementById("password-status");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form);
  status.textContent = "";
  const data = new FormData(form);
  const old_password = String(data.get("old_password") || "");
  const new_password = String(data.get("new_password") || "");
  if (!old_password) {
    showFormError(form, new ApiError("请输入原密码", { field: "old_password" }));
    return;
  }
  if (new_password.length < 8) {
    showFormError(form, new ApiError("新密码至少需要 8 个字符", { field: "new_password" }));
    return;
  }
  if (new_password !== data.get("confirm_password")) {
    showFormError(form, new ApiError("两次输入的新密码不一致", { field: "confirm_password" }));
    return;
  }
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    await api("/api/auth/password", { method: "POST", body: { old_password, new_password } });
    form.reset();
    status.textContent = "密码已修改。下次登录请使用新密码。";
  } catch (error) {
    showFormError(form, error);
  } finally {
    submit.disabled = false;
  }
});
