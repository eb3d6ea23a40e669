// consult.js: the consultation page. First a device check (choose the
// camera and microphone, see yourself, watch the microphone level), then
// the waiting room and the call, driven by the Call client of call.js:
// remote video large, self view small, mute, camera off, switch camera,
// screen share (practitioner), chat, quality figures (practitioner),
// messages when the network is bad or the other side dropped, and for the
// practitioner a prescription written, previewed and signed in the page.

import { api, session, ApiError } from './api.js';
import { t, fmtDateTime, fmtTime } from './i18n.js';
import { $, el, show, busy, pageID, icon } from './ui.js';
import { getMedia, listDevices, levelMeter } from './devices.js';
import { startOf, practitionerName, patientName } from './appt.js';
import { setupPrescription } from './rx-writer.js';

const id = pageID();
let me = null;
let appt = null;
let stream = null; // the local camera and microphone
let stopMeter = () => {};
let call = null;

for (const b of document.querySelectorAll('.controls button[data-icon]')) b.prepend(icon(b.dataset.icon));

// --- Device check -------------------------------------------------------

async function openDevices() {
  stopMeter();
  const old = stream;
  try {
    stream = await getMedia({ cameraId: $('#camera').value, microphoneId: $('#microphone').value });
  } catch (e) {
    show($('#check-msg'), 'error', e.name === 'NotAllowedError' ? t('consult.permission') : t('consult.nodevice'));
    stream = new MediaStream();
  }
  if (old && old !== stream) for (const tr of old.getTracks()) tr.stop();
  $('#preview').srcObject = stream;
  stopMeter = levelMeter(stream, $('#meter'));
  await fillDeviceLists();
  $('#self').srcObject = stream;
}

async function fillDeviceLists() {
  const { cameras, microphones } = await listDevices();
  const fill = (select, devices, current) => {
    select.replaceChildren(...devices.map((d, i) => el('option', { value: d.deviceId, selected: d.deviceId === current },
      d.label || `${select.id} ${i + 1}`)));
  };
  const v = stream.getVideoTracks()[0];
  const a = stream.getAudioTracks()[0];
  fill($('#camera'), cameras, v && v.getSettings().deviceId);
  fill($('#microphone'), microphones, a && a.getSettings().deviceId);
  $('#flip').hidden = cameras.length < 2;
}

$('#camera').addEventListener('change', openDevices);
$('#microphone').addEventListener('change', openDevices);

// --- Call ---------------------------------------------------------------

let remoteParticipant = ''; // whose camera the main video shows
// remoteMedia is what the main video plays: the other participant's
// sound and picture together, whatever streams they arrived in.
let remoteMedia = null;

// showRemote plays track in the main video, in place of the track of the
// same kind it had, beside the other kind.
function showRemote(track, participant) {
  const remote = $('#remote');
  if (!remoteMedia || remoteParticipant !== participant || remote.srcObject !== remoteMedia) remoteMedia = new MediaStream();
  for (const old of remoteMedia.getTracks()) {
    if (old.kind === track.kind && old !== track) remoteMedia.removeTrack(old);
  }
  if (!remoteMedia.getTracks().includes(track)) remoteMedia.addTrack(track);
  if (remote.srcObject !== remoteMedia) remote.srcObject = remoteMedia;
}

// clearRemote empties the main video.
function clearRemote() {
  remoteMedia = null;
  remoteParticipant = '';
  $('#remote').srcObject = null;
}
let ending = false;
let callClosed = false;
let watchTimer = 0;

function overlay(text) {
  const o = $('#overlay');
  o.hidden = !text;
  o.textContent = text || '';
}

function netWarning(text) {
  show($('#net'), 'warn', text);
}

function chatLine(m) {
  const mine = m.participant === call.participant;
  const time = m.time ? fmtTime(new Date(m.time)) : '';
  const li = el('li', { class: mine ? 'mine' : '' }, el('strong', {}, mine ? t('consult.you') : m.name), ' ', el('span', { class: 'small muted' }, time), el('br'), m.text);
  $('#chat-log').append(li);
  li.scrollIntoView({ block: 'nearest' });
}

// waitingList shows the practitioner who waits, with a button to admit.
function waitingList() {
  const box = $('#waiting-list');
  const waiting = [...call.peers].filter(([, p]) => p.state === 'waiting');
  box.replaceChildren(...(waiting.length ? waiting.map(([participant, p]) => {
    const b = el('button', { type: 'button', class: 'admit', dataset: { participant } }, t('consult.admit'));
    b.addEventListener('click', () => { b.disabled = true; call.admit(participant); });
    return el('li', { class: 'row spread' }, el('span', {}, p.name), b);
  }) : [el('li', { class: 'muted' }, t('consult.nobodywaiting'))]));
}

// renderStats shows the server's figures for what this practitioner
// receives, and the browser's own for the picture.
function renderStats(serverStats, local) {
  const rows = [];
  const kbps = (b) => (b ? Math.round(b / 1000) + ' kbit/s' : '—');
  const mine = (serverStats || []).find((p) => p.participant === call.participant);
  for (const d of (mine && mine.down) || []) {
    if (d.kind !== 'video') continue;
    rows.push([t('consult.stat.bitrate'), kbps(d.bitrate)]);
    rows.push([t('consult.stat.loss'), ((d.loss || 0) * 100).toFixed(1) + ' %']);
    if (d.rtt) rows.push([t('consult.stat.rtt'), Math.round(d.rtt / 1e6) + ' ms']);
  }
  if (local) {
    if (!rows.length && local.rtt !== undefined) rows.push([t('consult.stat.rtt'), Math.round(local.rtt * 1000) + ' ms']);
    if (local.width) rows.push([t('consult.stat.resolution'), `${local.width}×${local.height} · ${Math.round(local.fps || 0)} fps`]);
    rows.push([t('consult.stat.frames'), String(local.frames)]);
  }
  $('#stats').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

let lastServerStats = null;
let lastLocal = null;

// Quality watch: every 2 s, from the browser's statistics of what we
// receive. Heavy loss or a long round trip means a bad network; frames
// that stop coming while we are in the call mean the other side dropped
// (the server keeps their place for 30 s before telling us they left).
const WATCH_MS = 2000;
const BAD_LOSS = 0.08; // share of packets lost over the last interval
const BAD_RTT = 0.5; // seconds
const STALL_ROUNDS = 3; // intervals without a new frame
let watch = { lost: 0, received: 0, frames: 0, stalled: 0 };
// watchGen changes when the call re-joins with new peer connections: a
// round that began before reads the old ones and is dropped.
let watchGen = 0;

async function watchQuality() {
  if (!call || callClosed) return;
  const gen = watchGen;
  let lost = 0, received = 0, frames = 0, rtt, width = 0, height = 0, fps = 0;
  try {
    const { up, down } = await call.getStats();
    down.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        lost += r.packetsLost || 0; received += r.packetsReceived || 0; frames += r.framesDecoded || 0;
        width = r.frameWidth || width; height = r.frameHeight || height; fps = r.framesPerSecond || fps;
      }
    });
    for (const report of [down, up]) {
      report.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.currentRoundTripTime !== undefined) rtt = r.currentRoundTripTime; });
    }
  } catch {
    return;
  }
  if (gen !== watchGen) return;
  const dLost = lost - watch.lost;
  const dReceived = received - watch.received;
  const loss = dLost + dReceived > 0 ? dLost / (dLost + dReceived) : 0;
  const flowing = frames > watch.frames;
  watch = { lost, received, frames, stalled: flowing ? 0 : watch.stalled + 1 };
  const bad = loss > BAD_LOSS || (rtt !== undefined && rtt > BAD_RTT);
  if (!$('#net').dataset.reconnecting) netWarning(bad ? t('consult.badnetwork') : '');
  if (remoteParticipant && watch.stalled >= STALL_ROUNDS) {
    const p = call.peers.get(remoteParticipant);
    overlay(t('consult.peerdropped', { name: p ? p.name : t('consult.remote') }));
  } else if (remoteParticipant && flowing) {
    overlay('');
  }
  lastLocal = { frames, width, height, fps, rtt };
  if (me.role === 'practitioner') renderStats(lastServerStats, lastLocal);
}

function ended(text) {
  if (ending) return;
  ending = true;
  stopMeter();
  if (stream) for (const tr of stream.getTracks()) tr.stop();
  $('#room').hidden = true;
  $('#check').hidden = true;
  $('#net').hidden = true;
  $('#ended').hidden = false;
  $('#ended-text').textContent = text || t('consult.endedtext');
  $('#back').href = me.role === 'practitioner' ? '/pro/appointments/' + encodeURIComponent(id) : '/prescriptions';
}

// join asks the server for a place in the call: a token and the
// signalling URL of the node the room lives on.
function join() {
  return api('/appointments/' + encodeURIComponent(id) + '/join', { method: 'POST' });
}

// rejoin is join when the call lost its node: the room is placed on a
// live node. A refusal (the consultation ended, the session expired) ends
// the call; a network error or a busy server is tried again by call.js.
async function rejoin() {
  try {
    return await join();
  } catch (e) {
    if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) e.fatal = true;
    throw e;
  }
}

async function enter() {
  const info = await join();
  const { Call } = await import('./call.js');
  // Naming the room makes the server refuse a token for any other one.
  call = new Call({ signalingUrl: info.signaling_url, token: info.token, room: id, iceServers: info.ice_servers || [], rejoin });
  bindCall(call);
  const practitioner = me.role === 'practitioner';
  overlay(t('consult.connecting'));
  $('#check').hidden = true;
  $('#room').hidden = false;
  $('#self').srcObject = stream;
  $('#admit-box').hidden = !practitioner;
  $('#stats-box').hidden = !practitioner;
  $('#share').hidden = !practitioner || !navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia;
  $('#flip').hidden = $('#flip').hidden || typeof call.replaceTrack !== 'function';
  $('#rx-box').hidden = !practitioner;
  if (practitioner) {
    setupPrescription(id);
    $('#about').hidden = false;
    $('#about-patient').textContent = patientName(appt);
    $('#about-reason').textContent = appt.reason || '—';
  }
  try {
    await call.connect();
  } catch (e) {
    $('#room').hidden = true;
    $('#check').hidden = false;
    throw new Error(e.message && e.message !== 'refused' ? e.message : t('error.generic'));
  }
  if (stream.getTracks().length) await call.publish(stream);
  watchTimer = setInterval(watchQuality, WATCH_MS);
}

// bindCall shows what the call reports: the events of call.js, which
// follow signaling/PROTOCOL.md.
function bindCall(c) {
  const on = (type, fn) => c.addEventListener(type, (ev) => fn(ev.detail || {}));
  on('welcome', (d) => {
    if (d.state === 'waiting') overlay(t('consult.waiting') + (appt.delay_minutes ? ' ' + t('appointment.delay', { n: appt.delay_minutes }) : ''));
    else if (!remoteParticipant) overlay(t('consult.waitpeer'));
    if (me.role === 'practitioner') waitingList();
  });
  on('waiting', () => { if (me.role === 'practitioner') waitingList(); });
  on('admitted', (d) => {
    if (me.role === 'practitioner') waitingList();
    if (d.participant === c.participant && !remoteParticipant) overlay(t('consult.waitpeer'));
  });
  on('track', (d) => {
    if (d.label === 'screen') {
      $('#screen').srcObject = d.stream;
      $('#screen-box').hidden = false;
      return;
    }
    showRemote(d.track, d.participant || '');
    $('#remote').dataset.participant = d.participant || '';
    remoteParticipant = d.participant || '';
    overlay('');
  });
  on('trackended', (d) => {
    if ($('#screen').srcObject === d.stream) {
      $('#screen').srcObject = null;
      $('#screen-box').hidden = true;
    }
  });
  on('left', (d) => {
    if (me.role === 'practitioner') waitingList();
    if (d.participant === remoteParticipant) {
      clearRemote();
      overlay(t('consult.peerleft', { name: d.name }));
    }
  });
  on('chat', chatLine);
  on('file', fileLine);
  on('stats', (d) => { lastServerStats = d.stats; renderStats(lastServerStats, lastLocal); });
  on('reconnecting', (d) => {
    $('#net').dataset.reconnecting = '1';
    netWarning(t('consult.reconnecting'));
    // A new join restarts the media: the picture comes back with it.
    if (d.rejoin) overlay(t('consult.reconnecting'));
  });
  on('reconnected', (d) => {
    delete $('#net').dataset.reconnecting;
    netWarning('');
    if (d.rejoined) {
      // New peer connections count their frames from zero.
      watch = { lost: 0, received: 0, frames: 0, stalled: 0 };
      watchGen++;
      clearRemote();
      if (c.state === 'waiting') overlay(t('consult.waiting'));
      else overlay(t('consult.waitpeer'));
    }
  });
  on('ended', () => ended());
  on('error', (d) => {
    if (d.fatal && d.code !== 1000) show($('#msg'), 'error', t('consult.closed') + (d.reason ? ' (' + d.reason + ')' : ''));
    else if (!d.fatal) show($('#msg'), 'error', d.message || t('error.generic'));
  });
  on('closed', (d) => {
    callClosed = true;
    clearInterval(watchTimer);
    if (d.code === 1000 || d.code === 4410) ended();
  });
}

// fileLine shows a file sent in the call as a link to save it: files are
// relayed between the two browsers, never stored by the server.
function fileLine(m) {
  const mine = m.participant === call.participant;
  const url = URL.createObjectURL(m.blob);
  const li = el('li', { class: mine ? 'mine' : '' }, el('strong', {}, mine ? t('consult.you') : m.name), ' ',
    el('span', { class: 'small muted' }, m.time ? fmtTime(new Date(m.time)) : ''), el('br'),
    el('a', { href: url, download: m.file.name, class: 'chat-file' }, t('consult.file', { name: m.file.name })));
  $('#chat-log').append(li);
  li.scrollIntoView({ block: 'nearest' });
}

$('#chat-file').addEventListener('change', async (ev) => {
  const file = ev.target.files[0];
  ev.target.value = '';
  if (!file || !call) return;
  if (file.size > 256 * 1024) { show($('#msg'), 'error', t('consult.filetoobig')); return; }
  try { await call.sendFile(file); } catch (e) { show($('#msg'), 'error', e.message); }
});

$('#enter').addEventListener('click', (ev) => busy(ev.target, $('#check-msg'), enter));

$('#chat-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ev.target.text.value.trim();
  if (!text || !call) return;
  call.chat(text);
  ev.target.text.value = '';
});

function toggle(button, kind, onLabel, offLabel) {
  const on = button.getAttribute('aria-pressed') !== 'true';
  button.setAttribute('aria-pressed', String(on));
  button.querySelector('span').textContent = on ? offLabel : onLabel;
  for (const tr of kind === 'audio' ? stream.getAudioTracks() : stream.getVideoTracks()) tr.enabled = !on;
}
$('#mute').addEventListener('click', (ev) => toggle(ev.currentTarget, 'audio', t('consult.mute'), t('consult.unmute')));
$('#camoff').addEventListener('click', (ev) => toggle(ev.currentTarget, 'video', t('consult.camoff'), t('consult.camon')));

// Switch camera (phones: front and back): open the next camera and hand
// its track to the call in place of the current one.
// The button stays enabled (and focused) meanwhile: a second press while
// a camera opens is ignored.
let flipping = false;
$('#flip').addEventListener('click', () => {
  if (flipping || !call) return;
  flipping = true;
  busy(null, $('#msg'), flipCamera).finally(() => { flipping = false; });
});

async function flipCamera() {
  const { cameras } = await listDevices();
  const current = stream.getVideoTracks()[0];
  const idx = cameras.findIndex((c) => current && c.deviceId === current.getSettings().deviceId);
  const next = cameras[(idx + 1) % cameras.length];
  // Many phones cannot open their second camera while the first one
  // runs: close it first (the call sends nothing for that moment).
  const wasEnabled = current ? current.enabled : true;
  if (current) { stream.removeTrack(current); current.stop(); }
  const fresh = await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: next.deviceId } } });
  const track = fresh.getVideoTracks()[0];
  // Keep "camera off" as it was.
  track.enabled = wasEnabled;
  await call.replaceTrack(track, current);
  stream.addTrack(track);
  $('#self').srcObject = stream;
  $('#camera').value = next.deviceId;
  $('#flip').dataset.camera = next.label || next.deviceId;
}

$('#share').addEventListener('click', async (ev) => {
  const b = ev.currentTarget;
  const label = (on) => {
    b.setAttribute('aria-pressed', String(on));
    b.querySelector('span').textContent = on ? t('consult.stopshare') : t('consult.share');
  };
  if (b.getAttribute('aria-pressed') === 'true') {
    await call.stopScreen();
    label(false);
    return;
  }
  try {
    const screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
    // The browser's own "stop sharing" button ends the track.
    screen.getVideoTracks()[0].addEventListener('ended', () => { call.stopScreen(); label(false); });
    await call.shareScreen(screen);
    label(true);
  } catch (e) {
    if (e.name !== 'NotAllowedError') show($('#msg'), 'error', e.message);
  }
});

$('#end').addEventListener('click', () => {
  if (!call) return;
  if (me.role === 'practitioner') {
    if (!confirm(t('consult.endconfirm'))) return;
    call.end();
  } else {
    call.leave();
    ended(t('consult.endedtext'));
  }
});

// --- Start --------------------------------------------------------------

(async () => {
  me = await session(['patient', 'practitioner']);
  try {
    appt = await api('/appointments/' + encodeURIComponent(id));
  } catch (e) {
    show($('#msg'), 'error', e.message);
    $('#check').hidden = true;
    return;
  }
  const other = me.role === 'practitioner' ? patientName(appt) : practitionerName(appt);
  $('#appt-line').textContent = `${other} · ${fmtDateTime(startOf(appt))}`;
  if (me.role === 'practitioner') $('#enter').textContent = t('consult.admitnow');
  if (!navigator.mediaDevices) {
    show($('#check-msg'), 'error', t('consult.nodevice'));
    stream = new MediaStream();
    return;
  }
  await openDevices();
})().catch((e) => show($('#msg'), 'error', e.message));
