// One connection to a synchronized lesson (or an online research meeting) through the SFU
// (signaling protocol v1, see streaming/signaling.py): WebSocket signaling, one
// RTCPeerConnection, automatic rejoin.
//
// Events (CustomEvent, detail in brackets):
//   state [{state, message}]  connecting | live | reconnecting | replaced | error | stopped
//   joined [{participant, role, media}]   participants [list]   slots [list]
//   track [{slot, kind, track}]           local [MediaStream]   notice [{code, message}]
//   meeting [{spotlight, screen, audio_locked}]   speaker [participant id]   (meetings only)
import { api } from "./api.js";

const VERSION = 1;
const RETRY_MS = [1_000, 2_000, 4_000, 8_000, 15_000];
// The offer was refused: a fresh connection (new peer connection, new offer) may fix it.
const RENEGOTIATE = new Set([
  "malformed_sdp",
  "sdp_rejected",
  "offer_mismatch",
  "renegotiation_unsupported",
  "negotiation_failed",
]);
const DISCONNECTED_GRACE_MS = 4_000;
const CODECS = { video: "video/vp8", audio: "audio/opus" };
// Errors that a rejoin cannot fix: the page says why and stops.
const FATAL = new Set([
  "forbidden",
  "permission_denied",
  "not_found",
  "authentication_required",
  "unauthenticated",
  "role_not_allowed",
  "lead_taken",
  "too_many_errors",
  "unsupported_version",
]);

/**
 * A DOM element: `class`, `text`, `data-*`, `aria-*` and `role` as attributes, anything else as
 * a property (false/null/undefined skipped); then its children. The lesson and meeting views
 * draw with it.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") {
      node.setAttribute(key, value === true ? "" : value);
    } else node[key] = value;
  }
  node.append(...children);
  return node;
}

/**
 * A video tile: a figure (`attributes`) holding a muted, inline, autoplaying video and its
 * caption. Returns {figure, video, label}.
 */
export function videoTile(attributes, caption = "", { hidden = false } = {}) {
  const video = el("video", { autoplay: true, muted: true, playsInline: true, hidden });
  video.muted = true; // the property, not only the attribute, lets Chromium autoplay it
  const label = el("figcaption", { text: caption });
  const figure = el("figure", attributes, video, label);
  return { figure, video, label };
}

// TURN credentials are minted per user and expire (a day by default); a kiosk page stays open
// for days, so a connection made later asks again rather than reuse an expired one.
const ICE_SERVERS_KEPT_MS = 10 * 60 * 1000;
let iceServersPromise = null;
let iceServersFetchedAt = 0;

/** The STUN/TURN servers for this user (fetched again after ICE_SERVERS_KEPT_MS). */
export function iceServers(token) {
  if (!iceServersPromise || Date.now() - iceServersFetchedAt > ICE_SERVERS_KEPT_MS) {
    iceServersFetchedAt = Date.now();
    iceServersPromise = api("/api/webrtc/ice-servers", { token }).catch(() => {
      iceServersPromise = null;
      return [];
    });
  }
  return iceServersPromise;
}

function preferCodec(transceiver, kind) {
  const capabilities = RTCRtpReceiver.getCapabilities(kind);
  if (!capabilities || typeof transceiver.setCodecPreferences !== "function") return;
  const codecs = capabilities.codecs.filter((c) => c.mimeType.toLowerCase() === CODECS[kind]);
  if (codecs.length) transceiver.setCodecPreferences(codecs);
}

/**
 * A send-only transceiver; video goes out with three temporal layers (VP8 L1T3) so the SFU can
 * send a weak classroom only the base layer without re-encoding. A browser that refuses the
 * mode sends one layer.
 */
function addSender(pc, trackOrKind, init) {
  if (trackOrKind === "video" || (trackOrKind && trackOrKind.kind === "video")) {
    try {
      return pc.addTransceiver(trackOrKind, { ...init, sendEncodings: [{ scalabilityMode: "L1T3" }] });
    } catch {
      // fall through: no temporal layers in this browser
    }
  }
  return pc.addTransceiver(trackOrKind, init);
}

export class LessonConnection extends EventTarget {
  /**
   * @param {object} options
   * @param {number} options.groupId  the sync group
   * @param {string} [options.token]  a device or bearer token; else the session cookie
   * @param {boolean} [options.publish=true]  open the camera and microphone when the role sends
   * @param {string} [options.socketPath]  another room's socket, e.g. /ws/research/7
   * @param {string} [options.room]  that room's id, e.g. research-7
   * @param {boolean} [options.board=false]  ask for the second video line (board / screen)
   */
  constructor({ groupId = null, token = null, publish = true, socketPath = null, room = null, board = false }) {
    super();
    this.groupId = groupId;
    this.token = token;
    this.publish = publish;
    this.socketPath = socketPath || `/ws/lessons/${groupId}`;
    this.room = room || `sync-${groupId}`;
    this.board = board;
    this.videoQuality = "auto";
    this.host = false;
    this.meeting = null;
    this.speaker = null;
    this.senders = new Map(); // send line name -> RTCRtpSender
    this.state = "stopped";
    this.role = null;
    this.participant = null;
    this.media = [];
    this.participants = [];
    this.slots = [];
    this.localStream = null;
    this.pc = null;
    this.ws = null;
    this._attempt = 0;
    this._retryTimer = null;
    this._graceTimer = null;
    this._running = false;
    this._generation = 0;
  }

  start() {
    if (this._running) return;
    this._running = true;
    this._connect();
  }

  stop() {
    this._running = false;
    clearTimeout(this._retryTimer);
    this._send({ type: "leave" });
    this._teardown();
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) track.stop();
      this.localStream = null;
    }
    this._setState("stopped");
  }

  raiseHand() {
    this._send({ type: "raise_hand" });
  }
  lowerHand() {
    this._send({ type: "lower_hand" });
  }
  acceptHand(participant) {
    this._send({ type: "accept_hand", participant });
  }
  revokeHand(participant) {
    this._send({ type: "revoke_hand", participant });
  }
  /**
   * "low": receive only the base temporal layer of every video (fewer frames, about half the
   * bits: a weak link or a small screen); "auto": as much as the link carries. Kept across
   * reconnects.
   */
  setVideoQuality(quality) {
    this.videoQuality = quality;
    this._send({ type: "video_quality", quality });
  }
  inspect(participant) {
    this._send({ type: "inspect", participant });
  }
  /** Any other client message of the protocol (e.g. mute_all, spotlight in a meeting). */
  command(type, fields = {}) {
    this._send({ type, ...fields });
  }

  /** This participant's entry in the class list (null for inspectors, who are never listed). */
  me() {
    return this.participants.find((p) => p.id === this.participant) || null;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, message = "") {
    this.state = state;
    this._emit("state", { state, message });
  }

  _send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ v: VERSION, ...message }));
    }
  }

  _url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.token ? `?token=${encodeURIComponent(this.token)}` : "";
    return `${scheme}//${location.host}${this.socketPath}${query}`;
  }

  _connect() {
    const generation = ++this._generation;
    this._setState(this._attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(this._url());
    this.ws = ws;
    ws.addEventListener("open", () => {
      const join = { v: VERSION, type: "join", room: this.room };
      if (this.board) join.board = true;
      ws.send(JSON.stringify(join));
    });
    ws.addEventListener("message", (event) => {
      if (generation !== this._generation) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this._onMessage(message, generation).catch((error) => this._failed(error));
    });
    ws.addEventListener("close", (event) => {
      if (generation !== this._generation) return;
      // 4401/4403/4404: the server refused the join; it has said why in an error message.
      if (event.code >= 4400 && event.code < 4500) {
        this._fatal(this._lastError || "无法加入该课堂");
        return;
      }
      this._lost();
    });
  }

  async _onMessage(message, generation) {
    switch (message.type) {
      case "joined":
        this._attempt = 0;
        this.role = message.role;
        this.participant = message.participant;
        this.media = message.media;
        this.participants = message.participants || [];
        this.host = Boolean(message.host);
        this.meeting = message.meeting || null;
        if (this.videoQuality && this.videoQuality !== "auto") {
          this._send({ type: "video_quality", quality: this.videoQuality });
        }
        this._emit("joined", message);
        if (this.meeting) this._emit("meeting", this.meeting);
        this._emit("participants", this.participants);
        await this._negotiate(generation);
        break;
      case "answer":
        if (this.pc) await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
        break;
      case "participants":
        this.participants = message.participants;
        this._emit("participants", this.participants);
        break;
      case "slots":
        this.slots = message.slots;
        this._emit("slots", this.slots);
        break;
      case "meeting":
        this.meeting = message;
        this._emit("meeting", message);
        break;
      case "speaker":
        this.speaker = message.participant;
        this._emit("speaker", message.participant);
        break;
      case "closed":
        if (message.code === "replaced") {
          this._running = false;
          this._teardown();
          this._setState("replaced", message.message || "该教室已在别处重新连接");
        } else {
          this._lost();
        }
        break;
      case "error":
        this._lastError = message.message;
        if (FATAL.has(message.code)) {
          this._fatal(message.message);
        } else if (RENEGOTIATE.has(message.code)) {
          this._emit("notice", { code: message.code, message: message.message });
          this._lost();
        } else {
          this._emit("notice", { code: message.code, message: message.message });
        }
        break;
      default:
        break;
    }
  }

  async _openLocalMedia() {
    if (this.localStream || !this.publish) return;
    try {
      this.localStream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true },
        video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 25 } },
      });
      this._emit("local", this.localStream);
    } catch {
      this._emit("notice", {
        code: "no_camera",
        message: "无法打开摄像头或麦克风：本教室的画面和声音不会发出，但仍可收看。",
      });
    }
  }

  async _negotiate(generation) {
    if (this.media.some((line) => line.direction === "send")) await this._openLocalMedia();
    if (generation !== this._generation) return;
    const servers = await iceServers(this.token);
    if (generation !== this._generation) return;
    const pc = new RTCPeerConnection({ iceServers: servers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    const slotsByTransceiver = new Map();
    this.senders = new Map();
    for (const line of this.media) {
      let transceiver;
      if (line.direction === "send") {
        // The second video (board / screen) starts empty: the page fills it when it shares.
        const second = line.name === "board" || line.name === "screen";
        const local = this.localStream && !second
          ? this.localStream.getTracks().find((t) => t.kind === line.kind)
          : null;
        transceiver = local
          ? addSender(pc, local, { direction: "sendonly", streams: [this.localStream] })
          : addSender(pc, line.kind, { direction: "sendonly" });
      } else {
        transceiver = pc.addTransceiver(line.kind, { direction: "recvonly" });
      }
      preferCodec(transceiver, line.kind);
      slotsByTransceiver.set(transceiver, line);
      if (line.direction === "send") this.senders.set(line.name, transceiver.sender);
    }
    pc.addEventListener("track", (event) => {
      const line = slotsByTransceiver.get(event.transceiver);
      if (line) this._emit("track", { slot: line.name, kind: line.kind, track: event.track });
    });
    pc.addEventListener("icecandidate", (event) => {
      if (event.candidate && event.candidate.candidate) {
        this._send({
          type: "candidate",
          candidate: event.candidate.candidate,
          sdpMid: event.candidate.sdpMid,
        });
      }
    });
    pc.addEventListener("connectionstatechange", () => this._onConnectionState(pc, generation));
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this._send({ type: "offer", sdp: pc.localDescription.sdp });
  }

  _onConnectionState(pc, generation) {
    if (generation !== this._generation || pc !== this.pc) return;
    clearTimeout(this._graceTimer);
    const state = pc.connectionState;
    if (state === "connected") {
      this._setState("live");
    } else if (state === "failed") {
      this._lost();
    } else if (state === "disconnected") {
      // A short network hiccup recovers by itself; past the grace period, rejoin.
      this._setState("reconnecting");
      this._graceTimer = setTimeout(() => {
        if (pc === this.pc && pc.connectionState !== "connected") this._lost();
      }, DISCONNECTED_GRACE_MS);
    }
  }

  _failed(error) {
    this._emit("notice", { code: "client_error", message: `连接出错：${error.message || error}` });
    this._lost();
  }

  _fatal(message) {
    this._running = false;
    this._teardown();
    this._setState("error", message);
  }

  /** The signaling or media connection broke: tear down and rejoin after a backoff. */
  _lost() {
    if (!this._running) return;
    this._teardown();
    const wait = RETRY_MS[Math.min(this._attempt, RETRY_MS.length - 1)];
    this._attempt += 1;
    this._setState("reconnecting", `${Math.round(wait / 1000)} 秒后重新连接`);
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      if (this._running) this._connect();
    }, wait);
  }

  _teardown() {
    this._generation += 1;
    clearTimeout(this._graceTimer);
    const { ws, pc } = this;
    this.ws = null;
    this.pc = null;
    if (pc) pc.close();
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
  }
}
