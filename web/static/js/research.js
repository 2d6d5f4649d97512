// 教研: the host (or leader, or admin) saves a session's minutes and whether it was held.
import { api } from "./api.js";

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
