// settings.js: the practitioner's consultation types and fees, weekly
// opening hours per type, and absences.

import { api, list, session } from './api.js';
import { t, fmtDateTime, fmtMoney } from './i18n.js';
import { $, el, show, busy, empty } from './ui.js';

const BASE = '/practitioner';
let types = [];

function typeItem(c) {
  const edit = el('button', { type: 'button', class: 'secondary' }, t('action.edit'));
  edit.addEventListener('click', () => {
    const f = $('#type-form');
    f.id.value = c.id; f.name.value = c.name; f.mode.value = c.mode;
    f.duration_minutes.value = c.duration_minutes; f.fee.value = (c.fee_cents / 100).toFixed(2); f.active.checked = c.active;
    f.name.focus();
  });
  return el('li', { class: 'row spread' },
    el('span', {}, `${c.name} · ${t('mode.' + c.mode)} · ${t('practitioner.minutes', { n: c.duration_minutes })} · ${fmtMoney(c.fee_cents, c.currency)}`,
      c.active ? null : el('span', { class: 'badge muted' }, t('settings.inactive'))), edit);
}

async function loadTypes() {
  types = list(await api(BASE + '/consultation-types'), 'consultation_types');
  $('#types').replaceChildren(...(types.length ? types.map(typeItem) : [el('li', {}, empty(t('settings.notypes')))]));
}

function weekdaySelect(value) {
  // 1..6 then 0: the week starts on Monday in both languages.
  const names = [1, 2, 3, 4, 5, 6, 0].map((d) => {
    const date = new Date(2024, 0, 7 + d); // 7 January 2024 was a Sunday
    return el('option', { value: String(d), selected: d === value }, date.toLocaleDateString(document.documentElement.lang, { weekday: 'long' }));
  });
  return el('select', { name: 'weekday', 'aria-label': t('settings.weekday') }, names);
}

function hoursRow(h = { weekday: 1, start: '09:00', end: '12:00', consultation_type_id: types[0] && types[0].id }) {
  const remove = el('button', { type: 'button', class: 'link' }, t('action.remove'));
  const row = el('tr', {},
    el('td', {}, weekdaySelect(h.weekday)),
    el('td', {}, el('input', { type: 'time', name: 'start', value: h.start.slice(0, 5), 'aria-label': t('settings.from'), required: true })),
    el('td', {}, el('input', { type: 'time', name: 'end', value: h.end.slice(0, 5), 'aria-label': t('settings.to'), required: true })),
    el('td', {}, el('select', { name: 'type', 'aria-label': t('settings.type') }, types.map((c) => el('option', { value: c.id, selected: c.id === h.consultation_type_id }, c.name)))),
    el('td', {}, remove));
  remove.addEventListener('click', () => row.remove());
  return row;
}

async function loadHours() {
  const hours = list(await api(BASE + '/opening-hours'), 'opening_hours')
    .sort((a, b) => (a.weekday + 6) % 7 - (b.weekday + 6) % 7 || a.start.localeCompare(b.start));
  $('#hours').replaceChildren(...hours.map(hoursRow));
}

async function loadAbsences() {
  const absences = list(await api(BASE + '/absences'), 'absences');
  $('#absences').replaceChildren(...(absences.length ? absences.map((a) => {
    const del = el('button', { type: 'button', class: 'link' }, t('action.remove'));
    del.addEventListener('click', () => busy(del, $('#absence-msg'), async () => {
      await api(BASE + '/absences/' + encodeURIComponent(a.id), { method: 'DELETE' });
      await loadAbsences();
    }));
    return el('li', { class: 'row spread' }, el('span', {}, `${fmtDateTime(a.start)} → ${fmtDateTime(a.end)}`), del);
  }) : [el('li', {}, empty(t('settings.noabsences')))]));
}

$('#type-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const f = ev.target;
  busy(f.querySelector('button[type=submit]'), $('#type-msg'), async () => {
    const body = { name: f.name.value.trim(), mode: f.mode.value, duration_minutes: Number(f.duration_minutes.value),
      fee_cents: Math.round(Number(f.fee.value) * 100), currency: 'EUR', active: f.active.checked, new_patients: true };
    if (f.id.value) await api(BASE + '/consultation-types/' + encodeURIComponent(f.id.value), { method: 'PUT', body });
    else await api(BASE + '/consultation-types', { method: 'POST', body });
    f.reset(); f.id.value = '';
    await loadTypes();
    await loadHours();
    show($('#type-msg'), 'ok', t('account.saved'));
  });
});

$('#add-hours').addEventListener('click', () => {
  if (!types.length) { show($('#hours-msg'), 'error', t('settings.typefirst')); return; }
  $('#hours').append(hoursRow());
});

$('#save-hours').addEventListener('click', (ev) => busy(ev.target, $('#hours-msg'), async () => {
  const hours = [...$('#hours').querySelectorAll('tr')].map((r) => ({
    weekday: Number(r.querySelector('[name=weekday]').value), start: r.querySelector('[name=start]').value,
    end: r.querySelector('[name=end]').value, consultation_type_id: r.querySelector('[name=type]').value }));
  await api(BASE + '/opening-hours', { method: 'PUT', body: { opening_hours: hours } });
  await loadHours();
  show($('#hours-msg'), 'ok', t('account.saved'));
}));

$('#absence-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const f = ev.target;
  busy(f.querySelector('button'), $('#absence-msg'), async () => {
    await api(BASE + '/absences', { method: 'POST', body: { start: new Date(f.start.value).toISOString(), end: new Date(f.end.value).toISOString() } });
    f.reset();
    await loadAbsences();
  });
});

(async () => {
  await session(['practitioner']);
  await loadTypes();
  await Promise.all([loadHours(), loadAbsences()]);
})().catch((e) => show($('#msg'), 'error', e.message));
