// search.js: search results with each practitioner's next free slot.

import { api, list, optionalSession } from './api.js';
import { t, plural, fmtDateTime, fmtNumber, specialtyName } from './i18n.js';
import { fillSpecialties, nearMe } from './specialties.js';
import { $, el, show, empty } from './ui.js';

const params = new URLSearchParams(location.search);
const form = $('#search-form');
form.place.value = params.get('place') || '';
form.mode.checked = params.get('mode') === 'video';
const specialtiesReady = fillSpecialties($('#specialty'), params.get('specialty') || '');
optionalSession();
nearMe(form);

let page = 1;
let shown = 0;

// query turns the form's words into the API's filters: a postcode when
// the place is digits, else a city.
function query() {
  const q = new URLSearchParams();
  if (params.get('specialty')) q.set('specialty', params.get('specialty'));
  const place = (params.get('place') || '').trim();
  if (/^\d{2,5}$/.test(place)) q.set('postcode', place);
  else if (place) q.set('city', place);
  if (params.get('near')) { q.set('near', params.get('near')); q.set('radius_km', '25'); }
  if (params.get('mode') === 'video') q.set('mode', 'video');
  q.set('page', String(page));
  return q;
}

function result(p) {
  const slot = p.next_slot;
  const href = '/practitioners/' + encodeURIComponent(p.id);
  return el('li', { class: 'card result' },
    el('h2', {}, el('a', { href }, p.name)),
    el('p', { class: 'muted' }, [specialtyName(p.specialty), p.city, typeof p.distance_km === 'number' ? t('search.km', { n: fmtNumber(p.distance_km) }) : ''].filter(Boolean).join(' · ')),
    p.offers_video ? el('p', {}, el('span', { class: 'badge' }, t('search.videobadge'))) : null,
    slot
      ? el('p', {}, t('search.nextslot') + ' ',
        el('a', { class: 'button secondary', href: href + '?start=' + encodeURIComponent(slot.start) + (slot.consultation_type_id ? '&type=' + encodeURIComponent(slot.consultation_type_id) : '') },
          fmtDateTime(slot.start)))
      : el('p', { class: 'muted' }, t('search.noslot')),
  );
}

async function load() {
  await specialtiesReady;
  try {
    const data = await api('/practitioners?' + query());
    const results = list(data, 'results');
    const box = $('#results');
    if (page === 1) box.replaceChildren();
    for (const p of results) box.append(result(p));
    shown += results.length;
    if (shown === 0) box.replaceChildren(el('li', {}, empty(t('search.none'))));
    $('#count').textContent = shown ? plural('search.count', shown) : '';
    $('#more').hidden = !(data && (data.next_page || results.length >= (data.page_size || 20)));
  } catch (e) {
    show($('#msg'), 'error', e.message);
  }
}

$('#more').addEventListener('click', () => { page++; load(); });
load();
