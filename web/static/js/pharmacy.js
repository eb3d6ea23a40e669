// pharmacy.js: the pharmacist's inbox; accepting a prescription by its
// number and access code (typed, or read from its QR code with the camera
// where the browser has BarcodeDetector); then dispensing or rejecting it.
// The secret that proves this pharmacy accepted it stays in this tab.

import { api, list, session } from './api.js';
import { t, fmtDate, fmtDateTime } from './i18n.js';
import { $, el, show, busy, empty } from './ui.js';
import { itemText, rxStatus, rxBadge, rxDate, prescriberName, patientFullName, parseQR } from './rx.js';

let held = null; // the current acceptance: {id, secret, items, prescription}

function inboxItem(p) {
  // Taking one from the inbox: its number is filled in, the access code
  // is what the patient gives.
  const take = el('button', { type: 'button', class: 'secondary' }, t('pharmacy.take'));
  take.addEventListener('click', () => { $('#number').value = p.number || ''; $('#access').focus(); });
  return el('li', { class: 'card', dataset: { id: p.id } },
    el('div', { class: 'row spread' }, el('strong', {}, p.number || ''), el('span', { class: rxBadge(p.status) }, rxStatus(p.status))),
    el('p', {}, [patientFullName(p), prescriberName(p), rxDate(p)].filter(Boolean).join(' · ')),
    el('p', { class: 'small muted' }, (p.items || []).map(itemText).join(' ; ')),
    p.status === 'ready' ? el('div', { class: 'actions' }, take) : null);
}

async function loadInbox() {
  const box = $('#inbox');
  try {
    const all = list(await api('/pharmacy/prescriptions'), 'prescriptions');
    box.replaceChildren(...(all.length ? all.map(inboxItem) : [el('li', {}, empty(t('pharmacy.empty')))]));
  } catch (e) {
    show($('#msg'), 'error', e.message);
  } finally {
    box.removeAttribute('aria-busy');
  }
}

function showHeld(acc) {
  held = acc;
  sessionStorage.setItem('rx-secret-' + acc.id, acc.secret);
  const p = acc.prescription || {};
  $('#held').hidden = false;
  $('#held-title').textContent = t('pharmacy.held', { n: acc.number || p.number });
  $('#held-patient').textContent = patientFullName(p) + (p.patient && p.patient.birth_date ? ' · ' + t('rxwrite.born', { date: fmtDate(p.patient.birth_date) }) : '');
  $('#held-prescriber').textContent = [prescriberName(p), p.prescriber && p.prescriber.rpps ? 'RPPS ' + p.prescriber.rpps : ''].filter(Boolean).join(' · ');
  $('#held-signature').textContent = p.signed_at
    ? t('pharmacy.signed', { when: fmtDateTime(p.signed_at) }) + (p.document_sha256 ? ' · SHA-256 ' + p.document_sha256.slice(0, 16) + '…' : '')
    : t('pharmacy.unsigned');
  $('#held-pdf').href = '/api/v1/prescriptions/' + encodeURIComponent(acc.id) + '/pdf';
  $('#held-items').replaceChildren(...(acc.items || []).map((it, i) => el('label', { class: 'check' },
    el('input', { type: 'checkbox', name: 'item', value: String(i + 1), checked: true }), itemText(it))));
  $('#held').scrollIntoView({ behavior: 'smooth' });
}

function accept(number, accessCode) {
  return busy($('#accept-form button[type=submit]'), $('#msg'), async () => {
    showHeld(await api('/pharmacy/prescriptions/accept', { method: 'POST', body: { number, access_code: accessCode } }));
    $('#accept-form').reset();
    await loadInbox();
  });
}

$('#accept-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  accept(ev.target.number.value.trim(), ev.target.access_code.value.trim());
});

$('#dispense-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const chosen = [...ev.target.querySelectorAll('input[name=item]:checked')].map((c) => ({ item: Number(c.value) }));
  busy($('#dispense'), $('#held-msg'), async () => {
    await api('/pharmacy/prescriptions/' + encodeURIComponent(held.id) + '/dispense', { method: 'POST', body: { secret: held.secret, items: chosen } });
    sessionStorage.removeItem('rx-secret-' + held.id);
    $('#held').hidden = true;
    show($('#notice'), 'ok', t('pharmacy.dispensed'));
    await loadInbox();
  });
});

$('#reject').addEventListener('click', (ev) => busy(ev.target, $('#held-msg'), async () => {
  await api('/pharmacy/prescriptions/' + encodeURIComponent(held.id) + '/reject', { method: 'POST', body: { secret: held.secret } });
  sessionStorage.removeItem('rx-secret-' + held.id);
  $('#held').hidden = true;
  show($('#notice'), 'ok', t('pharmacy.rejected'));
  await loadInbox();
}));

// The QR scanner: only where the browser reads QR codes itself.
let stream = null;
function stopScan() {
  if (stream) for (const tr of stream.getTracks()) tr.stop();
  stream = null;
  $('#scanner').hidden = true;
}
async function scan() {
  const detector = new window.BarcodeDetector({ formats: ['qr_code'] });
  stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
  const video = $('#scan-video');
  video.srcObject = stream;
  $('#scanner').hidden = false;
  await video.play();
  while (stream) {
    const codes = await detector.detect(video).catch(() => []);
    const code = codes.find((c) => parseQR(c.rawValue));
    if (code) {
      const found = parseQR(code.rawValue);
      stopScan();
      $('#number').value = found.number;
      $('#access').value = found.accessCode;
      await accept(found.number, found.accessCode);
      return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
if ('BarcodeDetector' in window && navigator.mediaDevices) {
  window.BarcodeDetector.getSupportedFormats().then((f) => { $('#scan').hidden = !f.includes('qr_code'); }).catch(() => {});
  $('#scan').addEventListener('click', () => scan().catch((e) => { stopScan(); show($('#msg'), 'error', e.message); }));
  $('#scan-stop').addEventListener('click', stopScan);
}

(async () => {
  await session(['pharmacist']);
  await loadInbox();
})();
