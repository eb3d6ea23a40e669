// rx.js: showing a prescription's content (shared by the patient, the
// practitioner and the pharmacist pages).

import { t, fmtDate } from './i18n.js';
import { el } from './ui.js';

/** itemText describes one prescribed item in a line. */
export function itemText(i) {
  return [
    [i.drug, i.strength, i.form].filter(Boolean).join(' '),
    i.dosage,
    i.duration_days ? t('rx.days', { n: i.duration_days }) : null,
    i.quantity ? t('rx.quantity', { n: i.quantity }) : null,
    i.renewals ? t('rx.renewals', { n: i.renewals }) : null,
    i.substitutable === false ? t('rx.nonsubstitutable') : null,
  ].filter(Boolean).join(' · ');
}

/** itemsList lists the items of a prescription. */
export function itemsList(items) {
  return el('ul', { class: 'rx-items' }, (items || []).map((i) => el('li', {}, itemText(i))));
}

/** rxStatus names a prescription status. */
export const rxStatus = (s) => t('rxstatus.' + s);

/** rxBadge picks the badge colour of a prescription status. */
export function rxBadge(s) {
  return { draft: 'badge muted', ready: 'badge ok', in_progress: 'badge warn', completed: 'badge muted', cancelled: 'badge bad' }[s] || 'badge';
}

/** rxDate is the date a prescription was signed (or written). */
export const rxDate = (p) => fmtDate(p.signed_at || p.created_at);

/** prescriberName names the prescriber of a prescription. */
export const prescriberName = (p) => (p.prescriber && p.prescriber.name) || '';

/** patientFullName names the patient of a prescription. */
export const patientFullName = (p) => (p.patient ? `${p.patient.first_names || ''} ${p.patient.surname || ''}`.trim() : '');

/**
 * parseQR reads the number and access code from the QR code of a
 * prescription: {"urls":["Task/<number>/$accept?ac=<code>"]}.
 */
export function parseQR(text) {
  const m = /Task\/([^/"]+)\/\$accept\?ac=([^"&\s]+)/.exec(text || '');
  return m ? { number: decodeURIComponent(m[1]), accessCode: decodeURIComponent(m[2]) } : null;
}
