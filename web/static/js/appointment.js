// appointment.js: one appointment of the patient: confirmation after
// payment, calendar file, receipt, reschedule, cancel and join.

import { api, list, session } from './api.js';
import { t, fmtDateTime, fmtShortDate, fmtTime, fmtMoney, statusLabel } from './i18n.js';
import { $, el, show, busy, pageID, badgeClass } from './ui.js';
import { startOf, endOf, practitionerName, patientName, isOpen, canJoin } from './appt.js';

const id = pageID();
const base = '/appointments/' + encodeURIComponent(id);
const params = new URLSearchParams(location.search);
// The payment page sends the patient back with ?payment=done or
// ?payment=cancelled.
const paid = params.get('payment') === 'done' || params.has('paid');
const payCancelled = params.get('payment') === 'cancelled';
let appt = null;

function render(a) {
  appt = a;
  $('#when').textContent = fmtDateTime(startOf(a));
  $('#status').replaceChildren(el('span', { class: badgeClass(a.status), id: 'status-badge', dataset: { status: a.status } }, statusLabel(a.status)));
  $('#practitioner').replaceChildren(a.practitioner_id
    ? el('a', { href: '/practitioners/' + encodeURIComponent(a.practitioner_id) }, practitionerName(a) || t('appointment.profile'))
    : practitionerName(a));
  $('#type').textContent = [a.consultation_name, t('mode.' + a.mode)].filter(Boolean).join(' · ');
  $('#patient').textContent = patientName(a) || t('booking.self');
  $('#reason').textContent = a.reason || '—';
  $('#fee').textContent = a.fee_cents ? fmtMoney(a.fee_cents, a.currency) : '—';
  const delay = $('#delay');
  delay.hidden = !a.delay_minutes;
  delay.textContent = a.delay_minutes ? t('appointment.delay', { n: a.delay_minutes }) : '';

  $('#pay').hidden = true;
  const join = $('#join');
  join.hidden = !canJoin(a);
  join.href = '/consult/' + encodeURIComponent(a.id);
  const ics = $('#ics');
  ics.hidden = !['confirmed', 'arrived', 'in_progress'].includes(a.status);
  ics.href = '/api/v1' + base + '/ics';
  $('#receipt').hidden = true;
  $('#receipt').href = '/api/v1' + base + '/receipt';

  const future = new Date(startOf(a)).getTime() > Date.now();
  const changeable = isOpen(a) && future && a.status !== 'in_progress';
  $('#change').hidden = !changeable;
  const online = a.cancellable_online !== false;
  $('#cancel-form').hidden = !online;
  $('#reschedule-box').hidden = !online;
  if (!online) $('#policy').textContent = t('appointment.toolate');
  else if (a.cancel_cutoff) $('#policy').textContent = t('appointment.policy', { when: fmtDateTime(a.cancel_cutoff) });

  const notice = $('#notice');
  if (paid && a.status === 'confirmed') show(notice, 'ok', t('appointment.paidconfirmed'));
  else if (paid && a.status === 'pending_payment') show(notice, 'info', t('appointment.paywait'));
  else if (payCancelled && a.status === 'pending_payment') show(notice, 'warn', t('appointment.paycancelled'));
  else if (a.status === 'pending_payment') show(notice, 'warn', t('appointment.payneeded'));
  else show(notice, 'ok', '');
  $('#detail').removeAttribute('aria-busy');
}

async function load() {
  render(await api(base));
  await loadPayment();
}

// loadPayment shows how the appointment is paid: a link back to the open
// checkout, the card hold, the receipt once charged.
async function loadPayment() {
  let p;
  try {
    p = await api(base + '/payment');
  } catch {
    return; // a free consultation, or payments are not enabled
  }
  const pay = $('#pay');
  pay.hidden = !(appt.status === 'pending_payment' && p.checkout_url);
  if (!pay.hidden) pay.href = p.checkout_url;
  $('#receipt').hidden = !(p.captured_cents > 0);
  const line = $('#payment-state');
  line.textContent = t('payment.' + p.state, { amount: fmtMoney(p.amount_cents, p.currency) }) + (p.test_mode ? ' ' + t('payment.testmode') : '');
  line.hidden = false;
}

// After the payment page, the webhook may land a moment after the
// browser: look again for a few seconds.
async function waitForPayment() {
  for (let i = 0; i < 10 && appt && appt.status === 'pending_payment'; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    await load();
  }
}

async function loadRescheduleSlots() {
  const days = $('#reschedule-days');
  if (!appt || days.dataset.loaded) return;
  days.dataset.loaded = '1';
  const from = new Date();
  const to = new Date(Date.now() + 14 * 24 * 3600 * 1000);
  try {
    const q = new URLSearchParams({ from: from.toISOString(), to: to.toISOString(), consultation_type_id: appt.consultation_type_id });
    const slots = list(await api('/practitioners/' + encodeURIComponent(appt.practitioner_id) + '/slots?' + q), 'slots');
    const byDay = new Map();
    for (const s of slots) {
      const k = fmtShortDate(s.start);
      if (!byDay.has(k)) byDay.set(k, []);
      byDay.get(k).push(s);
    }
    if (!slots.length) days.append(el('p', { class: 'muted' }, t('practitioner.noslotsweek')));
    // A few days of a few times each: enough to choose, short on a phone.
    for (const [day, ss] of [...byDay].slice(0, 5)) {
      days.append(el('div', { class: 'day' }, el('h3', {}, day), el('ul', { class: 'slots' }, ss.slice(0, 8).map((s) => {
        const b = el('button', { type: 'button', 'aria-label': t('appointment.moveto', { when: fmtDateTime(s.start) }), dataset: { start: s.start } }, fmtTime(s.start));
        b.addEventListener('click', () => busy(b, $('#reschedule-msg'), async () => {
          const moved = await api(base + '/reschedule', { method: 'POST', body: { start: s.start } });
          if (moved && moved.id && moved.id !== id) { location.assign('/appointments/' + encodeURIComponent(moved.id)); return; }
          $('#reschedule-box').open = false;
          delete days.dataset.loaded;
          days.replaceChildren();
          await load();
          show($('#notice'), 'ok', t('appointment.rescheduled'));
        }));
        return el('li', {}, b);
      }))));
    }
  } catch (e) {
    show($('#reschedule-msg'), 'error', e.message);
  }
}

$('#reschedule-box').addEventListener('toggle', (ev) => { if (ev.target.open) loadRescheduleSlots(); });

$('#cancel-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!confirm(t('appointment.cancelconfirm'))) return;
  busy($('#cancel'), $('#cancel-msg'), async () => {
    await api(base + '/cancel', { method: 'POST', body: { reason: ev.target.reason.value.trim() } });
    await load();
    show($('#notice'), 'ok', t('appointment.cancelled'));
  });
});

// Live events about this appointment (payment confirmed, delay, change)
// reload it at once.
function listen() {
  if (!window.EventSource) return;
  const events = new EventSource('/api/v1/events');
  const mine = (ev) => {
    try { return JSON.parse(ev.data).data.appointment_id === id; } catch { return false; }
  };
  for (const kind of ['appointment.changed', 'appointment.delay', 'appointment.rescheduled', 'appointment.cancelled']) {
    events.addEventListener(kind, (ev) => { if (mine(ev)) load().catch(() => {}); });
  }
}

(async () => {
  await session(['patient']);
  try {
    await load();
    listen();
    // The join button appears when the room opens, without a reload.
    setInterval(() => { if (appt) render(appt); }, 30000);
    if (paid) await waitForPayment();
  } catch (e) {
    show($('#msg'), 'error', e.message);
    $('#detail').hidden = true;
  }
})();
