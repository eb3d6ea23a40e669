// call.js: the browser side of a video consultation.
//
// An ES module with no dependency and no build step. It speaks the
// signalling protocol described in signaling/PROTOCOL.md.
//
// Usage:
//
//   import { Call } from "/static/js/call.js";
//   const join = await (await fetch(`/api/v1/appointments/${id}/join`, {method: "POST"})).json();
//   const call = new Call({ signalingUrl: join.signaling_url, token: join.token, iceServers: join.ice_servers });
//   call.addEventListener("track", (e) => { video.srcObject = e.detail.stream; });
//   await call.connect();                       // resolves with the welcome message
//   const cam = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
//   await call.publish(cam);                    // camera + microphone
//
// Constructor options:
//   signalingUrl  ws(s):// URL of GET /api/v1/signal (relative paths are resolved against the page)
//   token         the join token
//   room          the appointment id this page means to join (optional; a token for another room is then refused)
//   iceServers    RTCIceServer[] (the join endpoint's ice_servers)
//   simulcast     send the camera in three layers (default false)
//   rejoin        async () => the join endpoint's answer ({token, signaling_url, ice_servers}), called when
//                 the socket cannot be resumed (its node is gone): the call then joins where that answer
//                 says, with a new token and fresh peer connections, publishing the same tracks
//
// Methods (all safe to call in any state; they return promises where they wait):
//   connect()           open the socket and handshake; resolves with the welcome message
//   publish(stream)     publish a camera/microphone MediaStream
//   shareScreen(stream) publish a screen MediaStream (a second video track); stopScreen() withdraws it
//   replaceTrack(track, old?) send track instead of old or the camera's track of its kind (switch camera), without renegotiation
//   admit(participant)  practitioner: let a waiting participant in
//   invite(name)        practitioner: resolves with {token, expires} for a one-time guest link
//   end()               practitioner: end the consultation for everyone
//   chat(text)          send a chat message
//   sendFile(file)      send a File/Blob of at most 256 KiB
//   restartIce()        restart ICE on both connections (done automatically on failure)
//   getStats()          resolves with {up, down} RTCStatsReports
//   leave()             leave for good and close everything
//
// Properties: participant, name, role, state ("waiting" | "admitted"), peers (Map id -> {name, role, state}).
//
// Events (CustomEvent; the payload is event.detail):
//   welcome       the welcome message (also after a resume, with resumed: true)
//   waiting       {participant, name, role}: someone is in the waiting room (to admitted participants)
//   admitted      {participant, name, role}: someone was admitted; if it is you, media starts
//   track         {track, stream, participant, name, role, label}: a remote track ("camera" or "screen")
//   trackended    {stream, participant}: a remote stream went away
//   chat          {participant, name, role, text, time}
//   file          {participant, name, role, file: {name, mime, data (base64)}, time, blob}
//   stats         {stats}: per-participant quality (practitioner only, every 2 s)
//   left          {participant, name, role}
//   ended         {participant, name, role}: the consultation is over
//   reconnecting  {attempt, rejoin}: the socket dropped, we are reconnecting (media continues meanwhile);
//                 rejoin is true once we ask the join endpoint for a new place (the media restarts)
//   reconnected   {resumed, rejoined}
//   error         {code, message}: a request was refused, or a fatal close ({code, reason, fatal: true})
//   closed        {code, reason}: the call is over for this client

const PROTOCOL_VERSION = 1;
// Close codes after which reconnecting cannot help (see PROTOCOL.md).
const FINAL_CLOSE = new Set([1000, 1009, 4400, 4401, 4403, 4409, 4410]);
const RESUME_WINDOW_MS = 30000;
// A dropped socket is reopened every RETRY_MS. When it cannot be resumed
// within REJOIN_AFTER_MS (its node is gone, or does not know us), a call
// with a rejoin function asks for a new place: a room whose node died is
// placed on a live one, and the page should be back within 10 s.
const RETRY_MS = 500;
const REJOIN_AFTER_MS = 2000;
// Closes after which the server will not take us back on that socket's
// node: 1001, it is stopping; 4401, our token expired.
const REJOIN_CLOSE = new Set([1001, 4401]);

export class Call extends EventTarget {
  constructor({ signalingUrl, token, room = "", iceServers = [], simulcast = false, rejoin = null }) {
    super();
    this.url = new URL(signalingUrl, location.href.replace(/^http/, "ws")).href;
    this.token = token;
    this.room = room;
    this.iceServers = iceServers;
    this.simulcast = simulcast;
    this._rejoinFn = rejoin;
    this._dropAt = 0; // when the socket dropped, until welcomed again
    this._rejoinTimer = 0;
    this.participant = "";
    this.name = "";
    this.role = "";
    this.state = "";
    this.peers = new Map();
    this._resume = "";
    this._ws = null;
    this._chain = Promise.resolve(); // incoming messages, applied strictly in order
    this._streams = {}; // down stream id -> {participant, name, role, label}
    this._published = []; // [{stream, label}]
    this._labels = {};
    this._upBusy = false;
    this._upAgain = false;
    this._upRestart = false;
    this._pendingInvite = null;
    this._closed = false;
    this._everWelcomed = false;
    this._makePeerConnections();
  }

  // connect opens the socket and resolves with the welcome message.
  connect() {
    return new Promise((resolve, reject) => {
      this._onWelcome = resolve;
      this._onRefused = reject;
      this._open();
    });
  }

  async publish(stream) {
    await this._addStream(stream, "camera");
  }

  async shareScreen(stream) {
    await this._addStream(stream, "screen");
  }

  async stopScreen() {
    const kept = [];
    for (const p of this._published) {
      if (p.label !== "screen") {
        kept.push(p);
        continue;
      }
      for (const tr of this._up.getTransceivers()) {
        if (tr.sender.track && p.stream.getTracks().includes(tr.sender.track)) {
          this._up.removeTrack(tr.sender);
        }
      }
      delete this._labels[p.stream.id];
    }
    this._published = kept;
    await this._offerUp(false);
  }

  // replaceTrack sends track in place of old, or of the published camera
  // track of the same kind (e.g. the back camera instead of the front
  // one). The sender keeps its place in the session: no renegotiation.
  // The caller stops the old track and updates its stream.
  async replaceTrack(track, old = null) {
    for (const p of this._published) {
      if (p.label !== "camera") continue;
      for (const tr of this._up.getTransceivers()) {
        const cur = tr.sender.track;
        if (cur && cur.kind === track.kind && (cur === old || p.stream.getTracks().includes(cur))) {
          await tr.sender.replaceTrack(track);
          return;
        }
      }
    }
    throw new Error("no published " + track.kind + " track to replace");
  }

  admit(participant) {
    this._send({ type: "admit", participant });
  }

  invite(name = "") {
    return new Promise((resolve) => {
      this._pendingInvite = resolve;
      this._send({ type: "invite", name });
    });
  }

  end() {
    this._send({ type: "end" });
  }

  chat(text) {
    this._send({ type: "chat", text });
  }

  async sendFile(file) {
    if (file.size > 256 * 1024) throw new Error("files are limited to 256 KiB");
    const bytes = new Uint8Array(await file.arrayBuffer());
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    this._send({ type: "file", file: { name: file.name || "file", mime: file.type || "application/octet-stream", data: btoa(bin) } });
  }

  async restartIce() {
    await this._offerUp(true);
    this._send({ type: "restart" });
  }

  async getStats() {
    return { up: await this._up.getStats(), down: await this._down.getStats() };
  }

  leave() {
    this._send({ type: "leave" });
    this._finish(1000, "left");
  }

  // ---- internals ----

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _makePeerConnections() {
    const config = { iceServers: this.iceServers, bundlePolicy: "max-bundle" };
    this._up = new RTCPeerConnection(config);
    this._down = new RTCPeerConnection(config);
    this._pending = { up: [], down: [] }; // candidates before the remote description
    for (const [dir, pc] of [["up", this._up], ["down", this._down]]) {
      pc.onicecandidate = (e) => {
        if (e.candidate) this._send({ type: "candidate", pc: dir, candidate: e.candidate.toJSON() });
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState !== "failed" || this._closed) return;
        // The network changed under the media: new ICE credentials.
        if (dir === "up") this._offerUp(true);
        else this._send({ type: "restart" });
      };
    }
    this._down.ontrack = (e) => {
      const stream = e.streams[0];
      if (!stream) return;
      const who = this._streams[stream.id] || {};
      this._emit("track", { track: e.track, stream, participant: who.participant, name: who.name, role: who.role, label: who.label });
      stream.onremovetrack = () => {
        if (stream.getTracks().length === 0) this._emit("trackended", { stream, participant: who.participant });
      };
    };
  }

  async _addStream(stream, label) {
    this._published.push({ stream, label });
    this._addTracks(stream, label);
    await this._offerUp(false);
  }

  _addTracks(stream, label) {
    this._labels[stream.id] = label;
    for (const track of stream.getTracks()) {
      const init = { direction: "sendonly", streams: [stream] };
      if (this.simulcast && track.kind === "video" && label === "camera") {
        init.sendEncodings = [
          { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000 },
          { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000 },
          { rid: "f", maxBitrate: 1500000 },
        ];
      }
      this._up.addTransceiver(track, init);
    }
  }

  // _offerUp offers the up connection; offers never overlap: one asked
  // for while another waits for its answer is made after it.
  async _offerUp(iceRestart) {
    if (this._upBusy) {
      this._upAgain = true;
      this._upRestart ||= iceRestart;
      return;
    }
    if (this._up.getTransceivers().length === 0) return;
    this._upBusy = true;
    try {
      const offer = await this._up.createOffer({ iceRestart });
      await this._up.setLocalDescription(offer);
      this._send({ type: "offer", pc: "up", sdp: offer.sdp, labels: this._labels });
    } catch (err) {
      this._upBusy = false;
      this._emit("error", { code: "offer_failed", message: String(err) });
    }
  }

  _open() {
    const ws = new WebSocket(this.url);
    this._ws = ws;
    ws.onopen = () => {
      const hello = { type: "hello", version: PROTOCOL_VERSION, token: this.token };
      if (this._resume) hello.resume = this._resume;
      if (this.room) hello.room = this.room;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (e) => {
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      this._chain = this._chain.then(() => this._handle(m)).catch((err) => this._emit("error", { code: "client", message: String(err) }));
    };
    ws.onclose = (e) => {
      if (ws !== this._ws || this._closed) return;
      this._ws = null;
      if (this._everWelcomed && this._rejoinFn && REJOIN_CLOSE.has(e.code)) {
        this._dropAt = this._dropAt || Date.now();
        this._rejoin();
        return;
      }
      if (!this._everWelcomed || FINAL_CLOSE.has(e.code)) {
        if (this._onRefused) this._onRefused(Object.assign(new Error(e.reason || "refused"), { code: e.code }));
        this._onRefused = null;
        this._emit("error", { code: e.code, reason: e.reason, fatal: true });
        this._finish(e.code, e.reason);
        return;
      }
      this._reconnect();
    };
  }

  // _reconnect opens a new socket after a drop, every RETRY_MS, for as
  // long as the server may still hold our session. With a rejoin
  // function, a socket not resumed within REJOIN_AFTER_MS gives way to a
  // new join (the watchdog also covers a socket that hangs connecting).
  _reconnect() {
    if (this._closed || this._rejoining) return;
    this._attempt = (this._attempt || 0) + 1;
    if (!this._dropAt) {
      this._dropAt = Date.now();
      if (this._rejoinFn) this._rejoinTimer = setTimeout(() => this._rejoin(), REJOIN_AFTER_MS);
    }
    const away = Date.now() - this._dropAt;
    if (away > RESUME_WINDOW_MS) {
      this._finish(4408, "could not reconnect");
      return;
    }
    if (this._rejoinFn && away >= REJOIN_AFTER_MS) {
      setTimeout(() => this._rejoin(), RETRY_MS);
      return;
    }
    this._emit("reconnecting", { attempt: this._attempt, rejoin: false });
    setTimeout(() => {
      if (!this._closed && !this._rejoining && !this._ws) this._open();
    }, this._rejoinFn ? RETRY_MS : Math.min(250 * 2 ** (this._attempt - 1), 4000));
  }

  // _rejoin asks the join endpoint where the room lives now and joins
  // there with its new token. Without a resume secret the server welcomes
  // us afresh (resumed: false), and _welcome then starts new peer
  // connections carrying the same published tracks.
  async _rejoin() {
    if (this._closed || this._rejoining || !this._dropAt) return;
    this._rejoining = true;
    clearTimeout(this._rejoinTimer);
    this._emit("reconnecting", { attempt: this._attempt || 1, rejoin: true });
    // Forget the socket to the lost node, even if it still hangs connecting.
    const old = this._ws;
    this._ws = null;
    if (old) {
      old.onclose = old.onmessage = null;
      old.close();
    }
    try {
      const info = await this._rejoinFn();
      if (this._closed) return;
      this.url = new URL(info.signaling_url, location.href.replace(/^http/, "ws")).href;
      this.token = info.token;
      if (info.ice_servers) this.iceServers = info.ice_servers;
      this._resume = "";
      this._rejoined = true;
      this._rejoining = false;
      this._open();
    } catch (err) {
      this._rejoining = false;
      if (err && err.fatal) {
        this._emit("error", { code: err.code || "rejoin_refused", reason: err.message, fatal: true });
        this._finish(4410, err.message || "refused");
        return;
      }
      this._reconnect();
    }
  }

  _send(m) {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(m));
  }

  async _addCandidate(dir, candidate) {
    const pc = dir === "up" ? this._up : this._down;
    if (!pc.remoteDescription) {
      this._pending[dir].push(candidate);
      return;
    }
    await pc.addIceCandidate(candidate).catch(() => {});
  }

  async _flush(dir) {
    const pc = dir === "up" ? this._up : this._down;
    const cs = this._pending[dir];
    this._pending[dir] = [];
    for (const c of cs) await pc.addIceCandidate(c).catch(() => {});
  }

  async _handle(m) {
    switch (m.type) {
      case "welcome":
        await this._welcome(m);
        break;
      case "answer":
        await this._up.setRemoteDescription({ type: "answer", sdp: m.sdp });
        await this._flush("up");
        this._upBusy = false;
        if (this._upAgain) {
          const restart = this._upRestart;
          this._upAgain = this._upRestart = false;
          await this._offerUp(restart);
        }
        break;
      case "offer":
        Object.assign(this._streams, m.streams || {});
        await this._down.setRemoteDescription({ type: "offer", sdp: m.sdp });
        await this._flush("down");
        await this._down.setLocalDescription(await this._down.createAnswer());
        this._send({ type: "answer", pc: "down", sdp: this._down.localDescription.sdp });
        break;
      case "candidate":
        await this._addCandidate(m.pc, m.candidate);
        break;
      case "waiting":
        this.peers.set(m.participant, { name: m.name, role: m.role, state: "waiting" });
        this._emit("waiting", m);
        break;
      case "admitted":
        this.peers.set(m.participant, { name: m.name, role: m.role, state: "admitted" });
        if (m.participant === this.participant) this.state = "admitted";
        this._emit("admitted", m);
        break;
      case "left":
        this.peers.delete(m.participant);
        this._emit("left", m);
        break;
      case "chat":
        this._emit("chat", m);
        break;
      case "file": {
        const bin = atob(m.file.data);
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        this._emit("file", { ...m, blob: new Blob([bytes], { type: m.file.mime }) });
        break;
      }
      case "invite":
        if (this._pendingInvite) this._pendingInvite({ token: m.token, expires: m.expires, name: m.name });
        this._pendingInvite = null;
        this._emit("invite", m);
        break;
      case "stats":
        this._emit("stats", { stats: m.stats });
        break;
      case "ended":
        this._emit("ended", m);
        this._finish(1000, "ended");
        break;
      case "error":
        this._emit("error", { code: m.code, message: m.message });
        break;
    }
  }

  async _welcome(m) {
    const resuming = this._everWelcomed;
    const rejoined = !!this._rejoined;
    if (resuming && !m.resumed && !rejoined && this._rejoinFn) {
      // The node does not know our resume secret (it restarted): the
      // room may live elsewhere now, so ask where before starting again.
      this._dropAt = Date.now();
      this._rejoin();
      return;
    }
    this._rejoined = false;
    this._attempt = 0;
    this._dropAt = 0;
    clearTimeout(this._rejoinTimer);
    this._everWelcomed = true;
    this.participant = m.participant;
    this.name = m.name;
    this.role = m.role;
    this.state = m.state;
    this._resume = m.resume;
    this.peers = new Map((m.peers || []).map((p) => [p.participant, { name: p.name, role: p.role, state: p.state }]));
    if (resuming && !m.resumed) {
      // The server forgot us (too long away): start the media afresh.
      this._up.close();
      this._down.close();
      this._streams = {};
      this._upBusy = this._upAgain = false;
      this._makePeerConnections();
      for (const p of this._published) this._addTracks(p.stream, p.label);
      await this._offerUp(false);
    } else if (resuming && this._upBusy) {
      // Our last offer may have been lost with the socket.
      this._upBusy = false;
      await this._offerUp(false);
    }
    if (resuming) this._emit("reconnected", { resumed: !!m.resumed, rejoined });
    this._emit("welcome", m);
    if (this._onWelcome) this._onWelcome(m);
    this._onWelcome = null;
    this._onRefused = null;
  }

  _finish(code, reason) {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._rejoinTimer);
    if (this._ws) this._ws.close(1000);
    this._ws = null;
    this._up.close();
    this._down.close();
    this._emit("closed", { code, reason });
  }
}
