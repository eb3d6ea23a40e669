// api.js: calls to the JSON API (/api/v1), errors as messages a person can
// read, and the session every page starts from.

import { t, lang } from './i18n.js';

// message gives an API error in the page's language: the catalogue's
// apierror.<code> when it has one, else the server's own words. In
// English the server's message is kept, as it may carry details (a time,
// a field name) that the catalogue's generic sentence lacks.
function message(code, serverMessage, fallback) {
  const key = 'apierror.' + code;
  const translated = t(key);
  if (translated !== key && (lang !== 'en' || !serverMessage)) return translated;
  return serverMessage || fallback;
}

/**
 * ApiError is a failed API call: message in the page's language, and the
 * server's own words in serverMessage (they may name fields).
 */
export class ApiError extends Error {
  constructor(status, code, message, serverMessage = '') {
    super(message);
    this.status = status;
    this.code = code;
    this.serverMessage = serverMessage;
  }
}

/** api calls the JSON API: api('/me'), api('/appointments', {method: 'POST', body}). */
export async function api(path, { method = 'GET', body } = {}) {
  const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch('/api/v1' + path, opts);
  } catch {
    throw new ApiError(0, 'network', t('error.network'));
  }
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await res.json().catch(() => null) : null;
  if (!res.ok) {
    const e = data && data.error;
    const fallback = res.status === 404 ? t('error.notfound') : t('error.generic');
    const code = (e && e.code) || 'http_' + res.status;
    throw new ApiError(res.status, code, message(code, e && e.message, fallback), (e && e.message) || '');
  }
  return data;
}

/** list returns the array of a list answer, whatever its key. */
export function list(data, key) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  if (data && Array.isArray(data.results)) return data.results;
  return [];
}

let current = null;

/**
 * session returns the logged-in account and shows the menu for its role.
 * Without a session it goes to /login and never resolves. With roles
 * given, another role gets a message instead of the page.
 */
export async function session(roles) {
  if (!current) {
    try {
      current = await api('/me');
    } catch (e) {
      if (e.status === 401) {
        location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
        return new Promise(() => {});
      }
      throw e;
    }
  }
  showMenu(current);
  if (roles && !roles.includes(current.role)) {
    const main = document.getElementById('main');
    main.replaceChildren();
    const p = document.createElement('p');
    p.className = 'alert warn';
    p.textContent = t('error.role');
    main.append(p);
    return new Promise(() => {});
  }
  return current;
}

/** optionalSession returns the account, or null for a visitor. */
export async function optionalSession() {
  try {
    current = current || (await api('/me'));
    showMenu(current);
    return current;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

// bindLanguageLinks makes the header's language switch also the signed-in
// account's language, so that its emails and text messages follow.
function bindLanguageLinks() {
  for (const a of document.querySelectorAll('.langs a[hreflang]')) {
    if (a.dataset.bound) continue;
    a.dataset.bound = '1';
    a.addEventListener('click', async (ev) => {
      ev.preventDefault();
      try {
        await api('/me', { method: 'PATCH', body: { language: a.hreflang } });
      } catch {
        // The page's language changes all the same.
      }
      location.assign(a.href);
    });
  }
}

function showMenu(me) {
  bindLanguageLinks();
  for (const li of document.querySelectorAll('.nav [data-role]')) {
    const role = li.dataset.role;
    li.hidden = !(role === me.role || role === 'any');
  }
  const out = document.getElementById('logout');
  if (out && !out.dataset.bound) {
    out.dataset.bound = '1';
    out.addEventListener('click', async () => {
      try { await api('/logout', { method: 'POST' }); } catch { /* the session is gone either way */ }
      location.assign('/');
    });
  }
}

/** homeFor is the first page of a role. */
export function homeFor(role) {
  return { practitioner: '/pro/agenda', pharmacist: '/pharmacy', admin: '/admin' }[role] || '/appointments';
}
