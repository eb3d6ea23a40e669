// dashboard.js: the practitioner's last twelve weeks, computed from the
// agenda: bookings per week, no-shows, cancellations, revenue and the
// share of video consults, drawn as inline SVG.

import { api, list, session } from './api.js';
import { t, fmtMoney, fmtPercent, fmtShortDate } from './i18n.js';
import { $, el, show, busy } from './ui.js';
import { barChart } from './charts.js';
import { startOf } from './appt.js';

const WEEKS = 12;

function weekStart(d) {
  const x = new Date(d); x.setHours(0, 0, 0, 0);
  x.setDate(x.getDate() - ((x.getDay() + 6) % 7));
  return x;
}

function kpi(label, value) {
  return el('div', { class: 'kpi' }, el('span', { class: 'small muted' }, label), el('b', {}, value));
}

function compute(appts, first) {
  const weeks = Array.from({ length: WEEKS }, (_, i) => {
    const d = new Date(first); d.setDate(d.getDate() + 7 * i);
    return { start: d, booked: 0, cancelled: 0, noShow: 0, done: 0, video: 0, revenue: 0 };
  });
  let currency = 'EUR';
  for (const a of appts) {
    // Round: a week that crosses a change to or from summer time is an
    // hour shorter or longer.
    const wk = weeks[Math.round((weekStart(startOf(a)) - first) / (7 * 86400000))];
    if (!wk || a.status === 'expired' || a.status === 'pending_payment') continue;
    currency = a.currency || currency;
    if (a.status === 'cancelled') { wk.cancelled++; continue; }
    wk.booked++;
    if (a.mode === 'video') wk.video++;
    if (a.status === 'no_show') wk.noShow++;
    if (a.status === 'completed') { wk.done++; wk.revenue += a.fee_cents || 0; }
  }
  return { weeks, currency };
}

(async () => {
  await session(['practitioner']);
  const first = weekStart(new Date());
  first.setDate(first.getDate() - 7 * (WEEKS - 1));
  const to = new Date(first); to.setDate(to.getDate() + 7 * WEEKS);
  try {
    const q = new URLSearchParams({ from: first.toISOString(), to: to.toISOString() });
    const { weeks, currency } = compute(list(await api('/appointments?' + q), 'appointments'), first);
    const sum = (k) => weeks.reduce((s, w) => s + w[k], 0);
    const booked = sum('booked'), cancelled = sum('cancelled');
    const labels = weeks.map((w) => fmtShortDate(w.start).replace(/^\S+\s/, ''));
    $('#kpis').replaceChildren(
      kpi(t('dashboard.kbookings'), String(booked)),
      kpi(t('dashboard.knoshow'), fmtPercent(booked ? sum('noShow') / booked : 0)),
      kpi(t('dashboard.kcancel'), String(cancelled)),
      kpi(t('dashboard.krevenue'), fmtMoney(sum('revenue'), currency)));
    $('#chart-bookings').replaceChildren(barChart({ title: t('dashboard.bookings'), labels,
      series: [{ name: t('dashboard.kbookings'), values: weeks.map((w) => w.booked) }], format: (v) => String(Math.round(v)), minMax: 4, integer: true }));
    $('#chart-revenue').replaceChildren(barChart({ title: t('dashboard.revenue'), labels,
      series: [{ name: t('dashboard.krevenue'), values: weeks.map((w) => w.revenue) }], format: (v) => fmtMoney(Math.round(v / 100) * 100, currency).replace(/[.,]00(?=\D*$)/, ''), minMax: 10000 }));
    $('#chart-outcomes').replaceChildren(barChart({ title: t('dashboard.outcomes'), labels,
      series: [{ name: t('dashboard.noshows'), values: weeks.map((w) => w.noShow) }, { name: t('dashboard.cancellations'), values: weeks.map((w) => w.cancelled) }],
      format: (v) => String(Math.round(v)), minMax: 2, integer: true }));
    $('#chart-video').replaceChildren(barChart({ title: t('dashboard.video'), labels,
      series: [{ name: t('dashboard.videoshare'), values: weeks.map((w) => (w.booked ? w.video / w.booked : 0)) }], format: fmtPercent, minMax: 1 }));
    $('#empty').hidden = booked + cancelled > 0;
  } catch (e) {
    show($('#msg'), 'error', e.message);
  }
})();

// Back from Stripe's onboarding (/settings/payouts?onboarding=done|refresh).
const onboarding = new URLSearchParams(location.search).get('onboarding');
if (onboarding === 'done') show($('#payout-notice'), 'ok', t('dashboard.onboarded'));
if (onboarding === 'refresh') show($('#payout-notice'), 'warn', t('dashboard.onboardagain'));
if (onboarding) $('#payouts').scrollIntoView();

$('#onboard').addEventListener('click', (ev) => busy(ev.target, $('#payout-msg'), async () => {
  const r = await api('/practitioner/payouts/onboard', { method: 'POST' });
  const url = r && (r.url || r.onboarding_url);
  if (url) location.assign(url);
}));
