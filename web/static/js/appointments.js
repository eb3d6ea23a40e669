// appointments.js: the patient's appointments, upcoming then past.

import { api, list, session } from './api.js';
import { t, fmtDateTime, statusLabel } from './i18n.js';
import { $, el, show, empty, badgeClass } from './ui.js';
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

(async () => {
  await session(['patient']);
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
