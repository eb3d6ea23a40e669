// prescriptions.js: the patient's prescriptions: read, download the signed
// PDF, send to a pharmacy.

import { api, list, session } from './api.js';
import { t } from './i18n.js';
import { $, el, show, busy, empty } from './ui.js';
import { itemsList, rxStatus, rxBadge, rxDate, prescriberName } from './rx.js';

let sending = null;

function item(p) {
  const pdf = '/api/v1/prescriptions/' + encodeURIComponent(p.id) + '/pdf';
  const send = el('button', { type: 'button', class: 'secondary' }, t('prescriptions.send'));
  send.addEventListener('click', () => { sending = p; $('#send-msg').hidden = true; $('#send-dialog').showModal(); });
  return el('li', { class: 'card', dataset: { id: p.id } },
    el('div', { class: 'row spread' },
      el('strong', {}, t('prescriptions.of', { date: rxDate(p) })),
      el('span', { class: rxBadge(p.status) }, rxStatus(p.status))),
    el('p', { class: 'muted' }, [prescriberName(p), p.number ? t('prescriptions.number', { n: p.number }) : null].filter(Boolean).join(' · ')),
    itemsList(p.items),
    p.instructions ? el('p', { class: 'small' }, p.instructions) : null,
    p.access_code ? el('p', { class: 'small' }, t('prescriptions.accesscode') + ' ', el('code', {}, p.access_code)) : null,
    p.pharmacy_id ? el('p', { class: 'small' }, t('prescriptions.senttopharmacy')) : null,
    el('div', { class: 'actions' },
      el('a', { class: 'button secondary', href: pdf, target: '_blank', rel: 'noopener' }, t('prescriptions.view')),
      el('a', { class: 'button secondary', href: pdf, download: (p.number || 'prescription') + '.pdf' }, t('prescriptions.download')),
      p.pharmacy_id || p.status !== 'ready' ? null : send));
}

async function load() {
  const box = $('#list');
  try {
    const all = list(await api('/prescriptions'), 'prescriptions').filter((p) => p.status !== 'draft');
    box.replaceChildren(...(all.length ? all.map(item) : [el('li', {}, empty(t('prescriptions.none')))]));
  } catch (e) {
    show($('#msg'), 'error', e.message);
  } finally {
    box.removeAttribute('aria-busy');
  }
}

async function searchPharmacies() {
  const place = $('#pharmacy-place').value.trim();
  const q = new URLSearchParams();
  if (/^\d{2,5}$/.test(place)) q.set('postcode', place); else if (place) q.set('city', place);
  const box = $('#pharmacies');
  try {
    const found = list(await api('/pharmacies?' + q), 'pharmacies');
    box.replaceChildren(...(found.length ? found.map((ph, i) => el('label', { class: 'check' },
      el('input', { type: 'radio', name: 'pharmacy', value: ph.id, checked: i === 0, required: true }),
      [ph.name, ph.address, ph.city].filter(Boolean).join(', '))) : [el('p', { class: 'muted' }, t('prescriptions.nopharmacy'))]));
  } catch (e) {
    show($('#send-msg'), 'error', e.message);
  }
}

$('#pharmacy-search').addEventListener('click', searchPharmacies);
$('#send-cancel').addEventListener('click', () => $('#send-dialog').close());
$('#send-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const chosen = ev.target.querySelector('input[name=pharmacy]:checked');
  if (!chosen) { show($('#send-msg'), 'error', t('prescriptions.choosepharmacy')); return; }
  busy($('#send-ok'), $('#send-msg'), async () => {
    await api('/prescriptions/' + encodeURIComponent(sending.id) + '/send', { method: 'POST', body: { pharmacy_id: chosen.value } });
    $('#send-dialog').close();
    show($('#notice'), 'ok', t('prescriptions.sent'));
    await load();
  });
});

(async () => {
  await session(['patient']);
  await load();
  searchPharmacies();
})();
