// The synchronized lesson page /lessons/{id}: join with the session cookie and draw the
// lesson for this account's role (lead teacher, remote teacher, or inspector).
import { LessonConnection } from "./lesson-client.js";
import { mountLessonView } from "./lesson-view.js";

const root = document.getElementById("lesson");
const groupId = Number(root.dataset.groupId);
const connection = new LessonConnection({ groupId, publish: root.dataset.role !== "inspector" });
window.tongkeLesson = connection; // for tests and support: the live RTCPeerConnection is .pc

mountLessonView(root.querySelector("#lesson-view"), connection, {
  onLeave: () => {
    connection.stop();
    window.location.assign(root.dataset.back || "/");
  },
});
window.addEventListener("pagehide", () => connection.stop());
connection.start();
