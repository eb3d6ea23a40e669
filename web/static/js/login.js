// login.js: the login and sign-up forms, with the second factor (TOTP)
// that staff accounts must give, and its first set-up.

import { api, homeFor } from './api.js';
import { lang } from './i18n.js';
import { $, el, busy } from './ui.js';

// next is where to go after logging in: a path on this site only.
function next(role) {
  const n = new URLSearchParams(location.search).get('next');
  return n && n.startsWith('/') && !n.startsWith('//') && !n.startsWith('/\\') ? n : homeFor(role);
}

let account = null;

function step(id) {
  for (const s of ['#login-form', '#totp-form', '#setup', '#recovery']) $(s).hidden = s !== id;
  $('#signup-link').hidden = id !== '#login-form';
  const first = $(id).querySelector('input');
  if (first) first.focus();
}

async function afterPassword(me) {
  account = me;
  if (me.mfa === 'required') { step('#totp-form'); return; }
  if (me.mfa === 'setup') {
    const s = await api('/account/totp/setup', { method: 'POST' });
    $('#secret').textContent = s.secret;
    $('#otpauth').href = s.otpauth_url;
    step('#setup');
    return;
  }
  location.assign(next(me.role));
}

function onSubmit(form, fn) {
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(form.querySelector('button'), $('#msg'), () => fn(form));
  });
}

const login = $('#login-form');
if (login) {
  onSubmit(login, async (f) => {
    afterPassword(await api('/login', { method: 'POST', body: { email: f.email.value.trim(), password: f.password.value } }));
  });
  onSubmit($('#totp-form'), async (f) => {
    await api('/login/totp', { method: 'POST', body: { code: f.code.value.trim() } });
    location.assign(next(account.role));
  });
  onSubmit($('#enable-form'), async (f) => {
    const r = await api('/account/totp/enable', { method: 'POST', body: { code: f.code.value.trim() } });
    $('#recovery-codes').replaceChildren(...(r.recovery_codes || []).map((c) => el('li', {}, el('code', {}, c))));
    $('#continue').href = next(account.role);
    step('#recovery');
  });
}

const signup = $('#signup-form');
if (signup) {
  onSubmit(signup, async (f) => {
    const body = { email: f.email.value.trim(), password: f.password.value, name: f.name.value.trim(), language: lang };
    await api('/signup', { method: 'POST', body });
    const me = await api('/login', { method: 'POST', body: { email: body.email, password: body.password } });
    location.assign(next(me.role));
  });
}
