// What a synchronized lesson looks like for each role, drawn from a LessonConnection:
// lead — the remote classes as tiles, raised hands to accept or take back;
// remote — the lead classroom full size, a large raise-hand button;
// inspector — the lesson muted, click to listen, look into one remote classroom.
import { el, videoTile } from "./lesson-client.js";

const ROLE_LABELS = { lead: "主讲教室", remote: "远端教室", inspector: "巡课" };
const STATE_TEXT = {
  connecting: "正在连接…",
  live: "直播中",
  reconnecting: "重新连接中…",
  replaced: "已在别处接入",
  error: "无法加入",
  stopped: "已离开",
};
const HAND_TEXT = { raised: "举手中", accepted: "发言中" };

/** 画质: "low" asks the SFU for the base temporal layer only (a weak link, a small screen). */
function qualityPicker(connection) {
  const select = el(
    "select",
    { class: "lv-quality", "data-testid": "video-quality", "aria-label": "画质" },
    el("option", { value: "auto", text: "画质：自动" }),
    el("option", { value: "low", text: "画质：流畅（省流量）" }),
  );
  select.value = connection.videoQuality || "auto";
  select.addEventListener("change", () => connection.setVideoQuality(select.value));
  return select;
}

function slotTile(slot, caption, { big = false } = {}) {
  const tile = videoTile({ class: big ? "lv-tile lv-big" : "lv-tile", "data-slot": slot }, caption);
  tile.video.dataset.slot = slot;
  return tile;
}

/**
 * Draw the lesson into `root` and keep it current. `options.onLeave` (optional) adds a leave
 * button. Returns {destroy()}.
 */
export function mountLessonView(root, connection, options = {}) {
  const tiles = new Map(); // slot -> {figure, video, label}
  const audios = new Map(); // slot -> <audio>
  let listening = false;
  let built = null;

  const status = el("span", { class: "lv-status", role: "status", "aria-live": "polite", "data-testid": "lesson-state" });
  const notice = el("p", { class: "lv-notice", role: "alert", hidden: true });
  const unlock = el("button", { type: "button", class: "lv-unlock", hidden: true, text: "点击开启声音" });
  const body = el("div", { class: "lv-body" });
  const head = el("div", { class: "lv-head" }, status, unlock);
  if (options.onLeave) {
    const leave = el("button", { type: "button", class: "secondary small", text: "离开课堂" });
    leave.addEventListener("click", options.onLeave);
    head.append(leave);
  }
  const audioBox = el("div", { class: "lv-audio", hidden: true });
  root.replaceChildren(head, notice, body, audioBox);

  unlock.addEventListener("click", () => {
    unlock.hidden = true;
    for (const audio of audios.values()) playAudio(audio);
  });

  function playAudio(audio) {
    if (audio.muted || !audio.srcObject) return;
    audio.play().catch(() => {
      // Autoplay with sound needs a click on this browser: offer one.
      unlock.hidden = false;
    });
  }

  function setState({ state, message }) {
    root.dataset.state = state;
    const text = STATE_TEXT[state] || state;
    status.textContent = message && state !== "live" ? `${text}（${message}）` : text;
    if (state === "live" || state === "connecting") notice.hidden = true;
    if (state === "error" || state === "replaced") showNotice(message || text);
  }

  function showNotice(message) {
    notice.textContent = message;
    notice.hidden = false;
  }

  function participantsList() {
    return el("ul", { class: "lv-people", "data-testid": "participants", "aria-label": "参与教室" });
  }

  function build(role) {
    built = role;
    root.dataset.role = role;
    tiles.clear();
    const recv = connection.media.filter((line) => line.direction === "recv");
    const stage = el("div", { class: "lv-stage" });
    const side = el("aside", { class: "lv-side" });
    const people = participantsList();
    if (role === "lead") {
      const grid = el("div", { class: "lv-grid", "data-testid": "remote-tiles" });
      for (const line of recv.filter((l) => l.kind === "video")) {
        const tile = slotTile(line.name, "");
        tile.figure.hidden = true;
        tiles.set(line.name, tile);
        grid.append(tile.figure);
      }
      const empty = el("p", { class: "lv-empty", text: "远端教室尚未接入。" });
      stage.append(el("h2", { text: "远端教室" }), grid, empty);
      const hands = el("ul", { class: "lv-hands", "data-testid": "hands", "aria-label": "举手的教室" });
      side.append(
        el("h2", { text: "举手" }),
        hands,
        el("p", { class: "muted lv-no-hands", text: "暂无教室举手。" }),
      );
    } else {
      const lead = slotTile("lead_camera", "主讲教室", { big: true });
      tiles.set("lead_camera", lead);
      const board = slotTile("lead_board", "板书 / 屏幕");
      board.figure.hidden = true;
      tiles.set("lead_board", board);
      stage.append(lead.figure, board.figure);
      side.append(qualityPicker(connection));
      if (role === "inspector") {
        const inspected = slotTile("inspect_video", "");
        inspected.figure.hidden = true;
        tiles.set("inspect_video", inspected);
        stage.append(inspected.figure);
        const listen = el("button", {
          type: "button",
          class: "lv-listen",
          "data-testid": "listen",
          "aria-pressed": "false",
          text: "开启声音",
        });
        listen.addEventListener("click", () => setListening(!listening, listen));
        side.append(el("p", { class: "muted", text: "巡课：静音观看，课堂中看不到您。" }), listen);
      } else {
        const hand = el("button", {
          type: "button",
          class: "lv-hand",
          "data-testid": "raise-hand",
          "aria-pressed": "false",
          text: "举手",
        });
        hand.addEventListener("click", () => {
          const me = connection.me();
          if (me && me.hand !== "none") connection.lowerHand();
          else connection.raiseHand();
        });
        side.append(hand, el("p", { class: "lv-hand-state muted", role: "status" }));
      }
    }
    if (role !== "inspector") {
      const self = slotTile("self", "本教室（预览）");
      self.figure.classList.add("lv-self");
      tiles.set("self", self);
      if (connection.localStream) self.video.srcObject = connection.localStream;
      else self.figure.hidden = true;
      stage.append(self.figure);
    }
    side.append(el("h2", { text: "参与教室" }), people);
    body.replaceChildren(stage, side);
    for (const line of recv.filter((l) => l.kind === "audio")) {
      if (!audios.has(line.name)) {
        const audio = el("audio", { autoplay: true });
        audio.dataset.slot = line.name;
        audio.muted = role === "inspector" && !listening;
        audios.set(line.name, audio);
        audioBox.append(audio);
      }
    }
    renderPeople();
    renderSlots();
  }

  function setListening(on, button) {
    listening = on;
    button.textContent = on ? "关闭声音" : "开启声音";
    button.setAttribute("aria-pressed", String(on));
    for (const audio of audios.values()) {
      audio.muted = !on;
      if (on) playAudio(audio);
    }
  }

  function renderPeople() {
    const list = body.querySelector("[data-testid=participants]");
    if (!list) return;
    const role = connection.role;
    list.replaceChildren(
      ...connection.participants.map((p) => {
        const item = el(
          "li",
          { "data-participant": p.id, "data-hand": p.hand },
          el("span", { class: "lv-name", text: p.name }),
          el("span", { class: "tag", text: ROLE_LABELS[p.role] || p.role }),
        );
        if (p.hand !== "none") item.append(el("span", { class: "tag lv-hand-tag", text: HAND_TEXT[p.hand] }));
        if (p.id === connection.participant) item.append(el("span", { class: "muted", text: "（本教室）" }));
        if (role === "inspector" && p.role === "remote") {
          const watching = connection.inspecting === p.id;
          const look = el("button", {
            type: "button",
            class: "secondary small",
            text: watching ? "停止查看" : "查看此教室",
          });
          look.addEventListener("click", () => {
            connection.inspecting = watching ? null : p.id;
            connection.inspect(connection.inspecting);
            renderPeople();
          });
          item.append(look);
        }
        return item;
      }),
    );
    if (role === "lead") renderHands();
    if (role === "remote") renderHandButton();
  }

  function renderHands() {
    const list = body.querySelector("[data-testid=hands]");
    const raised = connection.participants.filter((p) => p.role === "remote" && p.hand !== "none");
    body.querySelector(".lv-no-hands").hidden = raised.length > 0;
    list.replaceChildren(
      ...raised.map((p) => {
        const accepted = p.hand === "accepted";
        const action = el("button", {
          type: "button",
          class: accepted ? "secondary small" : "small",
          text: accepted ? "收回" : "允许发言",
          "aria-label": `${accepted ? "收回" : "允许发言"}：${p.name}`,
        });
        action.addEventListener("click", () =>
          accepted ? connection.revokeHand(p.id) : connection.acceptHand(p.id),
        );
        return el(
          "li",
          { "data-participant": p.id, "data-hand": p.hand },
          el("span", { class: "lv-name", text: p.name }),
          el("span", { class: "tag lv-hand-tag", text: HAND_TEXT[p.hand] }),
          action,
        );
      }),
    );
  }

  function renderHandButton() {
    const button = body.querySelector("[data-testid=raise-hand]");
    const state = body.querySelector(".lv-hand-state");
    const hand = connection.me()?.hand || "none";
    button.dataset.hand = hand;
    button.setAttribute("aria-pressed", String(hand !== "none"));
    button.textContent = { none: "举手", raised: "放下手", accepted: "结束发言" }[hand];
    state.textContent = {
      none: "",
      raised: "已举手，等待主讲教室允许发言…",
      accepted: "主讲教室已允许发言：各教室都能听到本教室的声音。",
    }[hand];
  }

  function renderSlots() {
    let shown = 0;
    for (const slot of connection.slots) {
      const tile = tiles.get(slot.slot);
      if (tile) {
        const on = slot.participant !== null;
        if (slot.slot !== "lead_camera") tile.figure.hidden = !on;
        if (on && slot.name && slot.slot !== "lead_board") tile.label.textContent = slot.name;
        tile.figure.dataset.participant = slot.participant || "";
        if (on && slot.slot.startsWith("remote_video")) shown += 1;
      }
    }
    const empty = body.querySelector(".lv-empty");
    if (empty) empty.hidden = shown > 0;
  }

  const handlers = {
    state: (event) => setState(event.detail),
    joined: () => {
      if (built !== connection.role) build(connection.role);
    },
    participants: () => renderPeople(),
    slots: () => renderSlots(),
    local: (event) => {
      const self = tiles.get("self");
      if (self) {
        self.video.srcObject = event.detail;
        self.figure.hidden = false;
      }
    },
    track: (event) => {
      const { slot, kind, track } = event.detail;
      const stream = new MediaStream([track]);
      if (kind === "video") {
        const tile = tiles.get(slot);
        if (tile) tile.video.srcObject = stream;
      } else {
        const audio = audios.get(slot);
        if (audio) {
          audio.srcObject = stream;
          playAudio(audio);
        }
      }
    },
    notice: (event) => showNotice(event.detail.message),
  };
  for (const [type, handler] of Object.entries(handlers)) {
    connection.addEventListener(type, handler);
  }
  setState({ state: connection.state, message: "" });
  return {
    destroy() {
      for (const [type, handler] of Object.entries(handlers)) {
        connection.removeEventListener(type, handler);
      }
      for (const audio of audios.values()) audio.srcObject = null;
      root.replaceChildren();
    },
  };
}
