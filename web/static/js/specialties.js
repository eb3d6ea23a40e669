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
