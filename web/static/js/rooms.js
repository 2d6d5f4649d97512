// 教室与终端: ask the API for a terminal's one-time pairing code and show it large.
import { api } from "./api.js";

const panel = document.getElementById("pairing");
const codeText = document.getElementById("pairing-code");
const nameText = document.getElementById("pairing-name");
const expiryText = document.getElementById("pairing-expiry");
const status = document.getElementById("pairing-status");

for (const button of document.querySelectorAll("[data-pair]")) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = "正在生成配对码…";
    status.className = "status";
    try {
      const pairing = await api(`/api/terminals/${button.dataset.pair}/pairing-code`, {
        method: "POST",
      });
      nameText.textContent = button.dataset.name;
      codeText.textContent = pairing.code;
      const expires = new Date(pairing.expires_at);
      expiryText.textContent = expires.toLocaleTimeString("zh-CN", {
        hour: "2-digit",
        minute: "2-digit",
      });
      panel.hidden = false;
      status.textContent = `已为 ${button.dataset.name} 生成配对码。`;
      panel.focus();
    } catch (error) {
      status.textContent = error.message;
      status.className = "status error";
    } finally {
      button.disabled = false;
    }
  });
}
