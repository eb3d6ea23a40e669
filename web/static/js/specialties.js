// specialties.js: fills a <select> with the directory's specialties.

import { api, list } from './api.js';
import { specialtyName, knowSpecialties } from './i18n.js';
import { el } from './ui.js';

/** fillSpecialties adds one option per specialty and selects current. */
export async function fillSpecialties(select, current) {
  try {
    const specialties = list(await api('/specialties'), 'specialties');
    knowSpecialties(specialties);
    specialties.sort((a, b) => specialtyName(a).localeCompare(specialtyName(b)));
    for (const s of specialties) {
      select.append(el('option', { value: s.code, selected: s.code === current }, specialtyName(s)));
    }
  } catch {
    // Without the list the form still searches every specialty.
  }
  return select;
}

/**
 * nearMe offers "around me" on a search form where the browser can tell
 * where it is: the position goes in the form's hidden near field (it is
 * sent to our server only, as a search filter) and the form is submitted.
 */
export function nearMe(form) {
  const button = form.querySelector('#near-me');
  if (!button || !navigator.geolocation) return;
  button.hidden = false;
  button.addEventListener('click', () => {
    button.disabled = true;
    navigator.geolocation.getCurrentPosition((pos) => {
      form.near.value = pos.coords.latitude.toFixed(4) + ',' + pos.coords.longitude.toFixed(4);
      form.place.value = '';
      form.submit();
    }, () => { button.disabled = false; }, { timeout: 10000, maximumAge: 600000 });
  });
}
