// 录像回放: 重新处理 — a recording the viewer manages is queued for processing again (POST
// /api/recordings/{id}/process). The server refuses one whose job still runs (409), and says why.
import { api } from "./api.js";

const status = document.getElementById("reprocess-status");

for (const button of document.querySelectorAll("[data-reprocess]")) {
  button.addEventListener("click", async () => {
    const name = button.getAttribute("aria-label").replace(/^重新处理：/, "");
    button.disabled = true;
    status.classList.remove("error");
    status.textContent = `正在提交：${name}`;
    try {
      await api(`/api/recordings/${button.dataset.reprocess}/process`, { method: "POST" });
    } catch (error) {
      status.textContent = `${name}：${error.message}`;
      status.classList.add("error");
      button.disabled = false;
      status.focus();
      return;
    }
    status.textContent = `已重新排队处理：${name}。处理完成后刷新本页即可看到新状态。`;
    status.focus();
  });
}
