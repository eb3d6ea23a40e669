// consult.js: the consultation page. First a device check (choose the
// camera and microphone, see yourself, watch the microphone level), then
// the waiting room and the call, driven by the Call client of call.js:
// remote video large, self view small, mute, camera off, switch camera,
// screen share (practitioner), chat, quality figures (practitioner),
// messages when the network is bad or the other side dropped, and for the
// practitioner a prescription written, previewed and signed in the page.

import { api, session } from './api.js';
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
let facing = 'user';

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
  if (call) await call.replaceLocalStream?.(stream);
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

function overlay(text) {
  const o = $('#overlay');
  o.hidden = !text;
  o.textContent = text || '';
}

function netWarning(text) {
  show($('#net'), 'warn', text);
}

function chatLine(m) {
  const mine = m.participant === (call && call.participant);
  const time = m.time ? fmtTime(new Date(m.time)) : '';
  const li = el('li', { class: mine ? 'mine' : '' }, el('strong', {}, mine ? t('consult.you') : m.name), ' ', el('span', { class: 'small muted' }, time), el('br'), m.text);
  $('#chat-log').append(li);
  li.scrollIntoView({ block: 'nearest' });
}

function waitingList(peers) {
  const box = $('#waiting-list');
  const waiting = peers.filter((p) => p.state === 'waiting');
  box.replaceChildren(...(waiting.length ? waiting.map((p) => {
    const b = el('button', { type: 'button', class: 'admit', dataset: { participant: p.participant } }, t('consult.admit'));
    b.addEventListener('click', () => call.admit(p.participant));
    return el('li', { class: 'row spread' }, el('span', {}, p.name), b);
  }) : [el('li', { class: 'muted' }, t('consult.nobodywaiting'))]));
}

function renderStats(s) {
  const dl = $('#stats');
  const rows = [];
  const kbps = (b) => (b ? Math.round(b / 1000) + ' kbit/s' : '—');
  for (const p of s || []) {
    for (const d of p.down || []) {
      if (d.kind !== 'video') continue;
      rows.push([t('consult.stat.bitrate'), kbps(d.bitrate)]);
      rows.push([t('consult.stat.loss'), ((d.loss || 0) * 100).toFixed(1) + ' %']);
      if (d.rtt) rows.push([t('consult.stat.rtt'), Math.round(d.rtt / 1e6) + ' ms']);
    }
  }
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

function ended(text) {
  stopMeter();
  if (stream) for (const tr of stream.getTracks()) tr.stop();
  $('#room').hidden = true;
  $('#check').hidden = true;
  $('#ended').hidden = false;
  $('#ended-text').textContent = text || t('consult.endedtext');
  $('#back').href = me.role === 'practitioner' ? '/pro/agenda' : '/prescriptions';
}

async function enter() {
  const info = await api('/appointments/' + encodeURIComponent(id) + '/join', { method: 'POST' });
  const { Call } = await import('./call.js');
  call = new Call({ signalingURL: info.signaling_url, token: info.token, iceServers: info.ice_servers, stream });
  bindCall(call);
  $('#check').hidden = true;
  $('#room').hidden = false;
  $('#self').srcObject = stream;
  const practitioner = me.role === 'practitioner';
  $('#admit-box').hidden = !practitioner;
  $('#stats-box').hidden = !practitioner;
  $('#share').hidden = !practitioner || !navigator.mediaDevices.getDisplayMedia;
  $('#rx-box').hidden = !practitioner;
  if (practitioner) setupPrescription(id);
  overlay(t('consult.connecting'));
  await call.join();
}

// bindCall shows what the call reports. The events are those of call.js
// (see signaling/PROTOCOL.md for what lies under them).
function bindCall(c) {
  const on = (type, fn) => c.addEventListener(type, (ev) => fn(ev.detail || {}));
  on('welcome', (d) => {
    if (d.state === 'waiting') overlay(t('consult.waiting'));
    else overlay(t('consult.waitpeer'));
    if (me.role === 'practitioner') waitingList(d.peers || []);
  });
  on('waiting', () => { if (me.role === 'practitioner') waitingList(c.peers ? [...c.peers.values()] : []); });
  on('admitted', (d) => {
    if (me.role === 'practitioner') waitingList(c.peers ? [...c.peers.values()] : []);
    if (d.participant === c.participant) overlay(t('consult.waitpeer'));
  });
  on('remotestream', (d) => {
    $('#remote').srcObject = d.stream;
    $('#remote').dataset.participant = d.participant || '';
    overlay('');
  });
  on('left', (d) => { overlay(t('consult.peerleft', { name: d.name })); });
  on('chat', chatLine);
  on('stats', (d) => renderStats(d.stats));
  on('reconnecting', () => netWarning(t('consult.reconnecting')));
  on('reconnected', () => netWarning(''));
  on('badnetwork', () => netWarning(t('consult.badnetwork')));
  on('ended', () => ended());
  on('error', (d) => show($('#msg'), 'error', d.message || t('error.generic')));
}

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
$('#flip').addEventListener('click', async () => {
  facing = facing === 'user' ? 'environment' : 'user';
  const { cameras } = await listDevices();
  const current = stream.getVideoTracks()[0];
  const idx = cameras.findIndex((c) => current && c.deviceId === current.getSettings().deviceId);
  $('#camera').value = cameras[(idx + 1) % cameras.length].deviceId;
  await openDevices();
});
$('#share').addEventListener('click', async (ev) => {
  const b = ev.currentTarget;
  if (b.getAttribute('aria-pressed') === 'true') {
    await call.stopScreenShare();
    b.setAttribute('aria-pressed', 'false');
    b.querySelector('span').textContent = t('consult.share');
    return;
  }
  try {
    await call.startScreenShare();
    b.setAttribute('aria-pressed', 'true');
    b.querySelector('span').textContent = t('consult.stopshare');
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
