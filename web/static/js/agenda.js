// agenda.js: the practitioner's agenda by day or week, refreshed every few
// seconds, with a banner when a patient waits in the video waiting room.

import { api, list, session } from './api.js';
import { t, fmtDate, fmtShortDate, fmtTime, statusLabel } from './i18n.js';
import { $, el, show, empty, badgeClass } from './ui.js';
import { startOf, patientName, isVideo } from './appt.js';

// Why 10 s: the waiting signal must show soon after the patient arrives,
// and one small query per open agenda every 10 s costs little.
const REFRESH_MS = 10000;
// A patient waits from a little before their appointment until well after
// its start: the waiting banner looks this far around now, whatever day
// the agenda shows (at 23:55 the patient of a 00:05 appointment waits
// today for one of tomorrow's).
const WAITING_SPAN_MS = 2 * 3600 * 1000;

const params = new URLSearchParams(location.search);
let view = params.get('view') === 'week' ? 'week' : 'day';
// ?date=YYYY-MM-DD opens the agenda on that day (or its week); today otherwise.
let day = startOfDay(parseDay(params.get('date')) || new Date());

function parseDay(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s || '');
  if (!m) return null;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return isNaN(d) ? null : d;
}

function startOfDay(d) { const x = new Date(d); x.setHours(0, 0, 0, 0); return x; }
function addDays(d, n) { const x = new Date(d); x.setDate(x.getDate() + n); return x; }
function weekStart(d) { const x = startOfDay(d); return addDays(x, -((x.getDay() + 6) % 7)); }
const isWaiting = (a) => a.status === 'arrived' || a.waiting === true;

function range() {
  return view === 'week' ? [weekStart(day), addDays(weekStart(day), 7)] : [day, addDays(day, 1)];
}

function card(a) {
  const href = '/pro/appointments/' + encodeURIComponent(a.id);
  return el('li', { class: 'card appt' + (isWaiting(a) ? ' waiting' : ''), dataset: { id: a.id, status: a.status } },
    el('time', { datetime: startOf(a) }, fmtTime(startOf(a))),
    el('div', {},
      el('a', { href }, patientName(a) || t('agenda.patient')),
      ' ', el('span', { class: badgeClass(a.status) }, isWaiting(a) ? t('agenda.waiting') : statusLabel(a.status)),
      el('div', { class: 'small muted' }, [a.consultation_name, t('mode.' + a.mode)].filter(Boolean).join(' · ')),
      isVideo(a) && ['confirmed', 'arrived', 'in_progress'].includes(a.status)
        ? el('a', { class: 'button' + (isWaiting(a) ? '' : ' secondary'), href: '/consult/' + encodeURIComponent(a.id) }, isWaiting(a) ? t('agenda.admit') : t('agenda.open'))
        : null));
}

function render(all) {
  const [from, to] = range();
  $('#range').textContent = view === 'week' ? t('agenda.weekof', { date: fmtShortDate(from) }) : fmtDate(from);
  const box = $('#agenda');
  const shown = (a) => { const s = new Date(startOf(a)); return s >= from && s < to; };
  const appts = all.filter((a) => a.status !== 'expired' && shown(a)).sort((a, b) => new Date(startOf(a)) - new Date(startOf(b)));
  if (view === 'day') {
    box.replaceChildren(appts.length ? el('ul', { class: 'list' }, appts.map(card)) : empty(t('agenda.none')));
  } else {
    const cols = [];
    for (let d = from; d < to; d = addDays(d, 1)) {
      const mine = appts.filter((a) => startOfDay(startOf(a)).getTime() === d.getTime());
      cols.push(el('section', { class: 'card' }, el('h2', {}, fmtShortDate(d)),
        mine.length ? el('ul', { class: 'list' }, mine.map(card)) : el('p', { class: 'small muted' }, t('agenda.free'))));
    }
    box.replaceChildren(el('div', { class: 'week' }, cols));
  }
  const waiting = all.filter(isWaiting);
  const banner = $('#waiting');
  banner.hidden = !waiting.length;
  banner.replaceChildren(...waiting.map((a) => el('p', {}, t('agenda.iswaiting', { name: patientName(a) || t('agenda.patient'), time: fmtTime(startOf(a)) }), ' ',
    el('a', { class: 'button', href: '/consult/' + encodeURIComponent(a.id) }, t('agenda.admit')))));
  if (waiting.length) document.title = '(' + waiting.length + ') ' + t('agenda.title');
  else document.title = t('agenda.title') + ' · ' + t('app.name');
}

let timer = null;
async function load() {
  clearTimeout(timer);
  const [from, to] = range();
  const fetchRange = async (a, b) => list(await api('/appointments?' + new URLSearchParams({ from: a.toISOString(), to: b.toISOString() })), 'appointments');
  // The days shown, and the hours around now for the waiting banner when
  // they fall outside them.
  const now = Date.now();
  const nearFrom = new Date(now - WAITING_SPAN_MS);
  const nearTo = new Date(now + WAITING_SPAN_MS);
  try {
    const shown = await fetchRange(from, to);
    const near = from <= nearFrom && to >= nearTo ? [] : await fetchRange(nearFrom, nearTo);
    const ids = new Set(shown.map((a) => a.id));
    render([...shown, ...near.filter((a) => !ids.has(a.id))]);
    show($('#msg'), 'error', '');
    $('#updated').textContent = t('agenda.updated', { time: fmtTime(new Date()) });
  } catch (e) {
    show($('#msg'), 'error', e.message);
  } finally {
    $('#agenda').removeAttribute('aria-busy');
    timer = setTimeout(load, REFRESH_MS);
  }
}

function setView(v) {
  view = v;
  $('#view-day').setAttribute('aria-pressed', String(v === 'day'));
  $('#view-week').setAttribute('aria-pressed', String(v === 'week'));
  load();
}

$('#view-day').addEventListener('click', () => setView('day'));
$('#view-week').addEventListener('click', () => setView('week'));
$('#prev').addEventListener('click', () => { day = addDays(day, view === 'week' ? -7 : -1); load(); });
$('#next').addEventListener('click', () => { day = addDays(day, view === 'week' ? 7 : 1); load(); });
$('#today').addEventListener('click', () => { day = startOfDay(new Date()); load(); });
document.addEventListener('visibilitychange', () => { if (!document.hidden) load(); });

// Live events: the server tells the practitioner at once when a patient
// enters the waiting room or an appointment changes; polling stays as the
// fallback when the stream is cut.
function listen() {
  if (!window.EventSource) return;
  const events = new EventSource('/api/v1/events');
  const refresh = () => load();
  events.addEventListener('patient.waiting', refresh);
  events.addEventListener('appointment.changed', refresh);
  events.addEventListener('appointment.booked', refresh);
  events.addEventListener('appointment.cancelled', refresh);
  events.addEventListener('appointment.rescheduled', refresh);
}

(async () => {
  await session(['practitioner']);
  setView(view);
  listen();
})();
