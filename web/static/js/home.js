// Teacher / student home: subscribe the week to a phone calendar and copy the URL.
import { api } from "./api.js";

const button = document.getElementById("subscribe");
const panel = document.getElementById("feed");
const urlField = document.getElementById("feed-url");
const copy = document.getElementById("feed-copy");
const status = document.getElementById("feed-status");

button.addEventListener("click", async () => {
  button.disabled = true;
  status.textContent = "正在生成订阅地址…";
  status.className = "status";
  try {
    const feed = await api("/api/calendar/feed", { method: "POST" });
    urlField.value = feed.url;
    panel.hidden = false;
    status.textContent = "已生成订阅地址。";
    urlField.focus();
    urlField.select();
  } catch (error) {
    status.textContent = error.message;
    status.className = "status error";
  } finally {
    button.disabled = false;
  }
});

copy.addEventListener("click", async () => {
  urlField.select();
  try {
    await navigator.clipboard.writeText(urlField.value);
    status.textContent = "已复制到剪贴板。";
  } catch {
    // No clipboard permission (e.g. plain http on a school PC): the text is selected instead.
    status.textContent = "无法自动复制，地址已选中，请按 Ctrl+C 复制。";
  }
});
