// pro-appointment.js: an appointment seen by its practitioner: reason,
// earlier appointments with the same patient, no-show, delay.

import { api, list, session } from './api.js';
import { t, fmtDateTime, statusLabel } from './i18n.js';
import { $, el, show, busy, pageID, empty, badgeClass } from './ui.js';
import { startOf, patientName, isVideo } from './appt.js';

const id = pageID();
const base = '/appointments/' + encodeURIComponent(id);

function render(a) {
  $('#when').textContent = fmtDateTime(startOf(a));
  $('#status').replaceChildren(el('span', { class: badgeClass(a.status) }, statusLabel(a.status)));
  $('#patient').textContent = patientName(a) || '—';
  $('#type').textContent = [a.consultation_name, t('mode.' + a.mode)].filter(Boolean).join(' · ');
  $('#reason').textContent = a.reason || '—';
  const open = ['confirmed', 'arrived', 'in_progress'].includes(a.status);
  const consult = $('#consult');
  consult.hidden = !(open && isVideo(a));
  consult.href = '/consult/' + encodeURIComponent(a.id);
  $('#noshow').hidden = !(['confirmed', 'arrived'].includes(a.status) && new Date(startOf(a)) < new Date());
  $('#delay-box').hidden = !(['confirmed', 'arrived'].includes(a.status));
  $('#delay-minutes').value = String(a.delay_minutes || 0);
  $('#detail').removeAttribute('aria-busy');
}

// history lists the practitioner's other appointments with the same
// patient over the past year and the month ahead (the API serves at most
// 400 days at a time).
async function history(a) {
  const box = $('#history');
  const q = new URLSearchParams({ from: new Date(Date.now() - 365 * 86400000).toISOString(), to: new Date(Date.now() + 30 * 86400000).toISOString() });
  const items = list(await api('/appointments?' + q), 'appointments')
    .filter((h) => h.id !== a.id && h.patient_id === a.patient_id && (h.relative_id || '') === (a.relative_id || ''))
    .sort((x, y) => new Date(startOf(y)) - new Date(startOf(x)));
  box.replaceChildren(...(items.length ? items.map((h) => el('li', { class: 'row spread' },
    el('a', { href: '/pro/appointments/' + encodeURIComponent(h.id) }, fmtDateTime(startOf(h))),
    el('span', { class: badgeClass(h.status) }, statusLabel(h.status)))) : [el('li', {}, empty(t('proappt.nohistory')))]));
}

async function load() {
  const a = await api(base);
  render(a);
  await history(a);
}

$('#noshow').addEventListener('click', (ev) => busy(ev.target, $('#msg'), async () => {
  await api(base + '/status', { method: 'POST', body: { status: 'no_show' } });
  await load();
  show($('#notice'), 'ok', t('proappt.noshowdone'));
}));

$('#delay-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  busy(ev.target.querySelector('button'), $('#delay-msg'), async () => {
    await api('/agenda/delay', { method: 'POST', body: { minutes: Number(ev.target.minutes.value) } });
    await load();
    show($('#notice'), 'ok', t('proappt.delaydone'));
  });
});

(async () => {
  await session(['practitioner']);
  await load();
})().catch((e) => show($('#msg'), 'error', e.message));
