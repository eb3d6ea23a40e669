// rx-writer.js: the practitioner writes a prescription during the call,
// saves it as a draft, previews it (a summary and the draft's PDF, marked
// not valid for dispensing), then signs it; once signed the patient finds
// it in their prescriptions.

import { api } from './api.js';
import { t, fmtDate } from './i18n.js';
import { $, el, show, busy } from './ui.js';
import { itemText, prescriberName, patientFullName } from './rx.js';

let draft = null;
let count = 0;
let previews = 0;

function itemFields() {
  count++;
  const n = count;
  const f = (name, label, attrs = {}) => el('div', { class: 'field' },
    el('label', { for: `rx-${name}-${n}` }, label), el('input', { id: `rx-${name}-${n}`, name, ...attrs }));
  const remove = el('button', { type: 'button', class: 'link' }, t('rxwrite.removeitem'));
  const box = el('fieldset', { class: 'rx-item' },
    el('legend', {}, t('rxwrite.item', { n })),
    f('drug', t('rxwrite.drug'), { required: true, maxlength: '500' }),
    el('div', { class: 'grid2' },
      f('strength', t('rxwrite.strength'), { maxlength: '500' }),
      f('form', t('rxwrite.form'), { maxlength: '500' })),
    f('dosage', t('rxwrite.dosage'), { required: true, maxlength: '500' }),
    el('div', { class: 'grid2' },
      f('duration_days', t('rxwrite.duration'), { type: 'number', min: '0', max: '366', value: '0' }),
      f('quantity', t('rxwrite.quantity'), { type: 'number', min: '0', max: '99', value: '1' }),
      f('renewals', t('rxwrite.renewals'), { type: 'number', min: '0', max: '11', value: '0' })),
    el('label', { class: 'check' }, el('input', { type: 'checkbox', name: 'substitutable', checked: true }), t('rxwrite.substitutable')),
    remove);
  remove.addEventListener('click', () => { box.remove(); changed(); });
  return box;
}

function content() {
  const items = [...$('#rx-items').querySelectorAll('.rx-item')].map((box) => {
    const v = (name) => box.querySelector(`[name=${name}]`);
    return {
      drug: v('drug').value.trim(), strength: v('strength').value.trim(), form: v('form').value.trim(),
      dosage: v('dosage').value.trim(), duration_days: Number(v('duration_days').value || 0),
      quantity: Number(v('quantity').value || 0), renewals: Number(v('renewals').value || 0),
      substitutable: v('substitutable').checked,
    };
  });
  return { items, instructions: $('#rx-instructions').value.trim() };
}

// preview shows the draft as the signed document will state it: the
// prescriber and patient blocks the server filled in, the items and the
// instructions, and the PDF the server renders of the draft (in a dialog
// on wide screens, a link everywhere: phones do not draw PDFs in frames).
function preview(v) {
  const pr = v.prescriber || {};
  $('#rx-prescriber').textContent = [prescriberName(v), pr.specialty, pr.rpps ? 'RPPS ' + pr.rpps : '', pr.address].filter(Boolean).join(' · ');
  const pa = v.patient || {};
  $('#rx-patient').textContent = [patientFullName(v), pa.birth_date ? t('rxwrite.born', { date: fmtDate(pa.birth_date) }) : ''].filter(Boolean).join(' · ');
  $('#rx-lines').replaceChildren(...(v.items || []).map((i) => el('li', {}, itemText(i))));
  $('#rx-notes').textContent = v.instructions || '';
  // A new URL for each save, so that the frame loads the new draft.
  previews++;
  $('#rx-draft-pdf').href = '/api/v1/prescriptions/' + encodeURIComponent(v.id) + '/preview.pdf?v=' + previews;
  $('#rx-sheet').hidden = false;
  show($('#rx-msg'), 'warn', '');
}

// changed: what is signed is what was previewed, so an edit after the
// preview takes the sign button away until the draft is saved again.
function changed() {
  if (!draft || $('#rx-sign').hidden) return;
  $('#rx-sign').hidden = true;
  show($('#rx-msg'), 'warn', t('rxwrite.changed'));
}

/** setupPrescription prepares the prescription form of appointment id. */
export function setupPrescription(appointmentID) {
  $('#rx-items').append(itemFields());
  $('#rx-add').addEventListener('click', () => { $('#rx-items').append(itemFields()); changed(); });
  $('#rx-form').addEventListener('input', changed);
  $('#rx-show-pdf').addEventListener('click', () => {
    const url = $('#rx-draft-pdf').href;
    if ($('#rx-frame').src !== url) $('#rx-frame').src = url;
    $('#rx-dialog').showModal();
  });
  $('#rx-dialog-close').addEventListener('click', () => $('#rx-dialog').close());
  $('#rx-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy($('#rx-preview'), $('#rx-msg'), async () => {
      draft = draft
        ? await api('/prescriptions/' + encodeURIComponent(draft.id), { method: 'PUT', body: content() })
        : await api('/appointments/' + encodeURIComponent(appointmentID) + '/prescriptions', { method: 'POST', body: content() });
      preview(draft);
      $('#rx-sign').hidden = false;
    });
  });
  $('#rx-sign').addEventListener('click', (ev) => busy(ev.target, $('#rx-msg'), async () => {
    const signed = await api('/prescriptions/' + encodeURIComponent(draft.id) + '/sign', { method: 'POST' });
    show($('#rx-status'), 'ok', t('rxwrite.signed', { n: signed.number || '' }));
    $('#rx-sign').hidden = true;
    $('#rx-preview').hidden = true;
    // The draft's preview is gone: the signed PDF is the document.
    $('#rx-frame').removeAttribute('src');
    $('#rx-draft-actions').hidden = true;
    $('#rx-draftnote').hidden = true;
    for (const input of $('#rx-form').querySelectorAll('input, textarea, button')) if (input.id !== 'rx-pdf') input.disabled = true;
    $('#rx-pdf').href = '/api/v1/prescriptions/' + encodeURIComponent(signed.id) + '/pdf';
    $('#rx-pdf').hidden = false;
  }));
}
