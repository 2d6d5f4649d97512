// Calls to the JSON API from pages: session cookie + X-CSRF-Token, Chinese errors.

export class ApiError extends Error {
  constructor(message, { status = 0, field = null, code = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.field = field;
    this.code = code;
  }
}

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** fetch() a JSON API path; resolves to the parsed body (null for 204), throws ApiError. */
export async function api(path, { method = "GET", body, token, anonymous = false, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  else if (method !== "GET" && !anonymous) headers["X-CSRF-Token"] = csrfToken();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: token || anonymous ? "omit" : "same-origin",
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("无法连接服务器，请检查网络后重试", { status: 0, code: "offline" });
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(error.message || `请求失败（${response.status}）`, {
      status: response.status,
      field: error.field || null,
      code: error.code || null,
    });
  }
  return data;
}

/**
 * Show an ApiError on a form: next to the control named by error.field (a slot whose
 * data-error-for lists that field), otherwise in the form's top alert.
 */
export function showFormError(form, error) {
  clearFormErrors(form);
  const field = error.field ? String(error.field).split(".")[0] : null;
  const slot = field
    ? [...form.querySelectorAll("[data-error-for]")].find((el) =>
        el.dataset.errorFor.split(" ").includes(field),
      )
    : null;
  if (slot) {
    slot.textContent = error.message;
    slot.hidden = false;
    const control = form.querySelector(`#${slot.dataset.control}`);
    if (control) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
    }
    return;
  }
  const top = form.querySelector(".form-alert");
  if (top) {
    top.textContent = error.message;
    top.hidden = false;
    top.focus();
  }
}

export function clearFormErrors(form) {
  for (const slot of form.querySelectorAll("[data-error-for], .form-alert")) {
    slot.textContent = "";
    slot.hidden = true;
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
  }
}

export function formatTime(value) {
  return value ? value.slice(0, 5) : "";
}
