// admin.js: the operator's page: create practitioners and pharmacies, and
// watch the outbox of messages, failed payments and webhooks. A section
// whose API route the server does not serve stays hidden.

import { api, list, session, ApiError } from './api.js';
import { t, fmtDateTime, fmtMoney, specialtyName } from './i18n.js';
import { fillSpecialties } from './specialties.js';
import { $, el, show, busy } from './ui.js';

async function fetchOrNull(path) {
  try {
    return await api(path);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

// served reports whether a POST-only route exists (405 to a GET).
async function served(path) {
  try { await api(path); return true; } catch (e) { return e instanceof ApiError && e.status === 405; }
}

// rows fills a table; each cell carries its column's heading, which
// phones show beside it when the table is laid out as one card per row.
function rows(tbody, items, cells) {
  const labels = [...tbody.closest('table').querySelectorAll('thead th')].map((th) => th.textContent);
  tbody.replaceChildren(...(items.length
    ? items.map((it) => el('tr', {}, cells(it).map((c, i) => el('td', { 'data-label': labels[i] || '' }, c === undefined || c === null ? '' : c))))
    : [el('tr', {}, el('td', { colspan: '6', class: 'muted' }, t('admin.nothing')))]));
}

const when = (x) => (x ? fmtDateTime(x) : '');

// retryButton sends a failed or held message again.
function retryButton(m) {
  const b = el('button', { type: 'button', class: 'link' }, t('admin.retry'));
  b.addEventListener('click', () => busy(b, $('#msg'), async () => {
    await api('/admin/outbox/' + encodeURIComponent(m.id) + '/retry', { method: 'POST' });
    await tables();
  }));
  return b;
}

async function tables() {
  const practitioners = await fetchOrNull('/admin/practitioners');
  if (practitioners) {
    $('#practitioners').hidden = false;
    rows($('#practitioners-rows'), list(practitioners, 'practitioners'), (p) => [p.name, p.email, specialtyName(p.specialty), p.rpps, `${p.postcode} ${p.city}`, when(p.created_at)]);
  }
  const pharmacies = await fetchOrNull('/admin/pharmacies');
  if (pharmacies) {
    $('#pharmacies').hidden = false;
    rows($('#pharmacies-rows'), list(pharmacies, 'pharmacies'), (p) => [p.name, p.address, p.postcode, p.city, p.phone]);
  }
  const outbox = await fetchOrNull('/admin/outbox');
  if (outbox) {
    $('#outbox').hidden = false;
    rows($('#outbox-rows'), list(outbox, 'messages'), (m) => [when(m.created_at), m.kind, m.channel, m.status, String(m.attempts),
      el('span', {}, m.last_error || '', ['failed', 'held'].includes(m.status) ? retryButton(m) : null)]);
  }
  const payments = await fetchOrNull('/admin/payments?status=failed');
  if (payments) {
    $('#payments').hidden = false;
    rows($('#payments-rows'), list(payments, 'payments'), (p) => [when(p.updated_at || p.created_at), p.appointment_id, fmtMoney(p.amount_cents, p.currency), p.status, p.payment_intent || '']);
  }
  const hooks = await fetchOrNull('/admin/webhooks?status=failed');
  if (hooks) {
    $('#webhooks').hidden = false;
    rows($('#webhooks-rows'), list(hooks, 'webhooks'), (w) => [when(w.last_failed_at), w.event_id, w.type, String(w.attempts), w.reason]);
  }
}

// markInvalid flags the fields the server refused (its message reads
// "rpps: ...; postcode: ...") and says, in the page's language, what each
// needs. It returns the message to show.
function markInvalid(f, err) {
  if (!(err instanceof ApiError) || err.code !== 'invalid_fields') return err.message;
  const names = (err.serverMessage || '').split('; ').map((part) => part.split(':')[0].trim()).filter((n) => f[n]);
  for (const n of names) f[n].setAttribute('aria-invalid', 'true');
  if (names.length) f[names[0]].focus();
  return t('admin.invalid') + ' ' + names.map((n) => t('admin.invalid.' + n)).join(' ');
}

function creator(formSel, msgSel, path, fields) {
  const f = $(formSel);
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    for (const input of f.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
    busy(f.querySelector('button[type=submit]'), $(msgSel), async () => {
      const body = Object.fromEntries(fields.map((k) => [k, f[k].value.trim()]));
      if (body.password !== undefined) body.password = f.password.value;
      let created;
      try {
        created = await api(path, { method: 'POST', body });
      } catch (e) {
        throw new Error(markInvalid(f, e));
      }
      f.reset();
      show($(msgSel), 'ok', t('admin.created.ok') + ' ' + (created.name || ''));
      await tables();
    });
  });
}

(async () => {
  await session(['admin']);
  if (await served('/admin/practitioners')) {
    $('#new-practitioner').hidden = false;
    await fillSpecialties($('#p-specialty'));
    creator('#practitioner-form', '#practitioner-msg', '/admin/practitioners', ['name', 'email', 'password', 'specialty', 'rpps', 'address', 'postcode', 'city']);
  }
  if (await served('/admin/pharmacies')) {
    $('#new-pharmacy').hidden = false;
    creator('#pharmacy-form', '#pharmacy-msg', '/admin/pharmacies', ['name', 'address', 'postcode', 'city', 'phone']);
  }
  await tables();
  if (![...document.querySelectorAll('main section.card')].some((s) => !s.hidden)) {
    show($('#msg'), 'info', t('admin.unavailable'));
  }
})().catch((e) => show($('#msg'), 'error', e.message));
