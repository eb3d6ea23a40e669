// practitioner.js: a practitioner's profile, the slot picker and the
// booking form (for oneself or a relative), then payment.

import { api, list, optionalSession } from './api.js';
import { t, fmtShortDate, fmtTime, fmtDateTime, fmtMoney, specialtyName } from './i18n.js';
import { $, el, show, busy, pageID, empty } from './ui.js';

// Why 6: a day of short slots would otherwise fill a phone's screen many
// times over; the rest of the day is one tap away.
const SHOWN_PER_DAY = 6;

const id = pageID();
const params = new URLSearchParams(location.search);
let practitioner = null;
let type = null;
let weekStart = startOfDay(params.get('start') ? new Date(params.get('start')) : new Date());
let chosen = params.get('start') || null;
let me = null;

function startOfDay(d) { const x = new Date(d); x.setHours(0, 0, 0, 0); return x; }
function addDays(d, n) { const x = new Date(d); x.setDate(x.getDate() + n); return x; }
const dayKey = (d) => { const x = new Date(d); return x.getFullYear() + '-' + (x.getMonth() + 1) + '-' + x.getDate(); };

async function loadProfile() {
  practitioner = await api('/practitioners/' + encodeURIComponent(id));
  document.title = practitioner.name + ' · ' + t('app.name');
  $('#name').textContent = practitioner.name;
  $('#specialty').textContent = specialtyName(practitioner.specialty_label || practitioner.specialty);
  $('#address').textContent = [practitioner.address, [practitioner.postcode, practitioner.city].filter(Boolean).join(' ')].filter(Boolean).join(', ');
  if (practitioner.languages && practitioner.languages.length) {
    $('#languages').textContent = t('practitioner.languages') + ' ' + practitioner.languages.map((l) => t('language.' + l)).join(', ');
  }
  $('#presentation').textContent = practitioner.presentation || '';
  $('#profile').removeAttribute('aria-busy');
  const types = (practitioner.consultation_types || []).filter((c) => c.active !== false);
  const box = $('#types');
  if (!types.length) { box.append(empty(t('practitioner.notypes'))); return; }
  const wanted = params.get('type');
  type = types.find((c) => c.id === wanted) || types[0];
  for (const c of types) {
    const input = el('input', { type: 'radio', name: 'type', value: c.id, checked: c === type });
    input.addEventListener('change', () => { type = c; chosen = null; updateBooking(); loadSlots(); });
    box.append(el('label', { class: 'check' }, input,
      `${c.name} · ${t('mode.' + c.mode)} · ${t('practitioner.minutes', { n: c.duration_minutes })} · ${fmtMoney(c.fee_cents, c.currency)}`));
  }
}

async function loadSlots() {
  const days = $('#days');
  if (!type) return;
  const to = addDays(weekStart, 7);
  $('#week-label').textContent = t('practitioner.week', { from: fmtShortDate(weekStart), to: fmtShortDate(addDays(to, -1)) });
  $('#prev').disabled = weekStart <= startOfDay(new Date());
  days.setAttribute('aria-busy', 'true');
  try {
    const q = new URLSearchParams({ from: weekStart.toISOString(), to: to.toISOString(), consultation_type_id: type.id });
    const slots = list(await api('/practitioners/' + encodeURIComponent(id) + '/slots?' + q), 'slots');
    const byDay = new Map();
    for (const s of slots) {
      const k = dayKey(s.start);
      if (!byDay.has(k)) byDay.set(k, []);
      byDay.get(k).push(s);
    }
    days.replaceChildren();
    for (let i = 0; i < 7; i++) {
      const d = addDays(weekStart, i);
      const daySlots = byDay.get(dayKey(d)) || [];
      const ul = el('ul', { class: 'slots' });
      for (const [n, s] of daySlots.entries()) {
        const b = el('button', { type: 'button', 'aria-pressed': String(s.start === chosen), 'aria-label': fmtDateTime(s.start), dataset: { start: s.start } }, fmtTime(s.start));
        b.addEventListener('click', () => {
          chosen = s.start;
          for (const x of days.querySelectorAll('button[aria-pressed]')) x.setAttribute('aria-pressed', 'false');
          b.setAttribute('aria-pressed', 'true');
          updateBooking();
          $('#booking').scrollIntoView({ behavior: 'smooth', block: 'start' });
        });
        ul.append(el('li', { hidden: n >= SHOWN_PER_DAY && s.start !== chosen }, b));
      }
      const hiddenCount = ul.querySelectorAll('li[hidden]').length;
      if (hiddenCount) {
        const more = el('button', { type: 'button', class: 'secondary more' }, t('practitioner.more', { n: hiddenCount }));
        more.addEventListener('click', () => {
          for (const li of ul.querySelectorAll('li[hidden]')) li.hidden = false;
          more.parentElement.remove();
          ul.querySelector('li:nth-child(' + (SHOWN_PER_DAY + 1) + ') button').focus();
        });
        ul.append(el('li', {}, more));
      }
      days.append(el('div', { class: 'day' }, el('h3', {}, fmtShortDate(d)),
        daySlots.length ? ul : el('p', { class: 'small muted' }, t('practitioner.noslots'))));
    }
    if (!slots.length) days.append(el('p', { class: 'muted' }, t('practitioner.noslotsweek')));
  } catch (e) {
    show($('#msg'), 'error', e.message);
  } finally {
    days.removeAttribute('aria-busy');
  }
}

function updateBooking() {
  const box = $('#booking');
  box.hidden = !chosen || !type;
  if (box.hidden) return;
  $('#chosen').textContent = t('booking.chosen', { when: fmtDateTime(chosen), type: type.name });
  $('#fee').textContent = type.fee_cents ? t('booking.fee', { fee: fmtMoney(type.fee_cents, type.currency) }) : '';
  $('#book').textContent = me ? t('booking.submit') : t('booking.loginfirst');
}

async function loadRelatives() {
  if (!me || me.role !== 'patient') return;
  try {
    const relatives = list(await api('/relatives'), 'relatives');
    for (const r of relatives) $('#who').append(el('option', { value: r.id }, `${r.given_names} ${r.family_name}`));
  } catch {
    // Booking for oneself still works without the list.
  }
}

$('#prev').addEventListener('click', () => { weekStart = addDays(weekStart, -7); loadSlots(); });
$('#next').addEventListener('click', () => { weekStart = addDays(weekStart, 7); loadSlots(); });

$('#booking-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!me) {
    const back = location.pathname + '?start=' + encodeURIComponent(chosen) + '&type=' + encodeURIComponent(type.id);
    location.assign('/login?next=' + encodeURIComponent(back));
    return;
  }
  const form = ev.target;
  busy($('#book'), $('#booking-msg'), async () => {
    const body = { practitioner_id: id, consultation_type_id: type.id, start: chosen, reason: form.reason.value.trim() };
    if (form.who.value) body.relative_id = form.who.value;
    const appt = await api('/appointments', { method: 'POST', body });
    if (appt.status === 'pending_payment' && appt.payment && appt.payment.checkout_url) {
      location.assign(appt.payment.checkout_url);
    } else {
      location.assign('/appointments/' + encodeURIComponent(appt.id));
    }
  });
});

// The waiting list: a patient is told when an earlier slot frees up.
$('#waitlist-join').addEventListener('click', (ev) => busy(ev.target, $('#waitlist-msg'), async () => {
  await api('/waitlist', { method: 'POST', body: { practitioner_id: id, consultation_type_id: type ? type.id : '' } });
  show($('#waitlist-msg'), 'ok', t('waitlist.joined'));
  ev.target.hidden = true;
}));

(async () => {
  me = await optionalSession().catch(() => null);
  $('#waitlist').hidden = !(me && me.role === 'patient');
  try {
    await loadProfile();
    updateBooking();
    await Promise.all([loadSlots(), loadRelatives()]);
  } catch (e) {
    show($('#msg'), 'error', e.message);
  }
})();
