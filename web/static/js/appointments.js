// appointments.js: the patient's appointments, upcoming then past.

import { api, list, session } from './api.js';
import { t, fmtDateTime, statusLabel } from './i18n.js';
import { $, el, show, busy, empty, badgeClass } from './ui.js';
import { startOf, endOf, practitionerName, patientName, isOpen, canJoin, isVideo } from './appt.js';

function item(a) {
  const href = '/appointments/' + encodeURIComponent(a.id);
  return el('li', { class: 'card', dataset: { id: a.id } },
    el('div', { class: 'row spread' },
      el('a', { href }, el('strong', {}, fmtDateTime(startOf(a)))),
      el('span', { class: badgeClass(a.status) }, statusLabel(a.status))),
    el('p', {}, [practitionerName(a), t('mode.' + a.mode)].filter(Boolean).join(' · ')),
    patientName(a) ? el('p', { class: 'small muted' }, t('appointment.for', { name: patientName(a) })) : null,
    el('div', { class: 'actions' },
      el('a', { class: 'button secondary', href }, t('appointments.details')),
      canJoin(a) ? el('a', { class: 'button', href: '/consult/' + encodeURIComponent(a.id) }, t('appointment.join')) : null,
      isVideo(a) && !canJoin(a) && isOpen(a) ? el('span', { class: 'small muted' }, t('appointment.joinlater')) : null));
}

// waitlist shows the slots offered to the patient from waiting lists
// (to book before the offer expires) and the lists they are on.
async function waitlist() {
  let data;
  try {
    data = await api('/waitlist');
  } catch {
    return;
  }
  const offers = list(data.offers || [], 'offers').filter((o) => o.status === 'offered');
  const entries = list(data.entries || [], 'entries').filter((e) => e.status === 'waiting');
  const items = [
    ...offers.map((o) => el('li', { class: 'card' },
      el('p', {}, el('strong', {}, t('waitlist.offer', { when: fmtDateTime(o.start) }))),
      el('p', { class: 'small muted' }, t('waitlist.until', { when: fmtDateTime(o.expires_at) })),
      el('a', { class: 'button', href: '/practitioners/' + encodeURIComponent(o.practitioner_id) + '?start=' + encodeURIComponent(o.start) + '&type=' + encodeURIComponent(o.consultation_type_id) }, t('waitlist.book')))),
    ...entries.map((e) => {
      const leave = el('button', { type: 'button', class: 'link' }, t('waitlist.leave'));
      leave.addEventListener('click', () => busy(leave, $('#msg'), async () => {
        await api('/waitlist/' + encodeURIComponent(e.id), { method: 'DELETE' });
        await waitlist();
      }));
      return el('li', { class: 'card row spread' },
        el('a', { href: '/practitioners/' + encodeURIComponent(e.practitioner_id) }, t('waitlist.entry', { since: fmtDateTime(e.created_at) })), leave);
    }),
  ];
  $('#waitlist').hidden = !items.length;
  $('#waitlist-list').replaceChildren(...items);
}

(async () => {
  await session(['patient']);
  waitlist();
  try {
    const all = list(await api('/appointments'), 'appointments');
    const now = Date.now();
    const upcoming = all.filter((a) => isOpen(a) && new Date(endOf(a) || startOf(a)).getTime() >= now)
      .sort((a, b) => new Date(startOf(a)) - new Date(startOf(b)));
    const past = all.filter((a) => !upcoming.includes(a)).sort((a, b) => new Date(startOf(b)) - new Date(startOf(a)));
    $('#upcoming').replaceChildren(...(upcoming.length ? upcoming.map(item) : [el('li', {}, empty(t('appointments.noupcoming')))]));
    $('#past').replaceChildren(...(past.length ? past.map(item) : [el('li', {}, empty(t('appointments.nopast')))]));
  } catch (e) {
    show($('#msg'), 'error', e.message);
  } finally {
    $('#upcoming').removeAttribute('aria-busy');
  }
})();
