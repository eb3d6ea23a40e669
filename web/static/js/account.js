// account.js: the account page: language, notification channels,
// relatives and password. A section whose API route the server does not
// serve stays hidden.

import { api, list, session, ApiError } from './api.js';
import { t, fmtDate, fmtDateTime } from './i18n.js';
import { $, el, show, busy, empty } from './ui.js';

// served reports whether the API serves path for some method: the router
// answers 405 to a GET on a POST-only route and 404 to a missing one.
async function served(path) {
  try {
    await api(path);
    return true;
  } catch (e) {
    return e instanceof ApiError && e.status !== 404 && e.status !== 0;
  }
}

function form(id, msg, fn) {
  const f = $(id);
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(f.querySelector('button[type=submit]'), $(msg), async () => {
      await fn(f);
    });
  });
}

function note(box, text) { show($(box), 'ok', text); }

async function loadRelatives() {
  const rel = list(await api('/relatives'), 'relatives');
  $('#relatives-list').replaceChildren(...(rel.length ? rel.map((r) => {
    const remove = el('button', { type: 'button', class: 'link', 'aria-label': t('account.removerelative', { name: `${r.given_names} ${r.family_name}` }) }, t('action.remove'));
    remove.addEventListener('click', () => busy(remove, $('#relative-msg'), async () => {
      await api('/relatives/' + encodeURIComponent(r.id), { method: 'DELETE' });
      await loadRelatives();
    }));
    return el('li', { class: 'row spread' },
      el('span', {}, `${r.given_names} ${r.family_name} · ${t('relationship.' + r.relationship)} · ${fmtDate(r.birth_date)}`), remove);
  }) : [el('li', {}, empty(t('account.norelatives')))]));
}

// loadSessions lists where the account is logged in; any other session
// can be closed from here.
async function loadSessions() {
  const sessions = list(await api('/account/sessions'), 'sessions');
  $('#sessions-list').replaceChildren(...sessions.map((s) => {
    const end = el('button', { type: 'button', class: 'link' }, t('account.endsession'));
    end.addEventListener('click', () => busy(end, $('#sessions-msg'), async () => {
      await api('/account/sessions/' + encodeURIComponent(s.id), { method: 'DELETE' });
      await loadSessions();
    }));
    return el('li', { class: 'row spread' },
      el('span', {}, el('span', { class: 'small' }, s.user_agent || '—'), el('br'),
        el('span', { class: 'small muted' }, t('account.lastseen', { when: fmtDateTime(s.last_seen_at) }))),
      s.current ? el('span', { class: 'badge ok' }, t('account.thissession')) : end);
  }));
}

(async () => {
  const me = await session();
  $('#me-name').textContent = me.name;
  $('#me-email').textContent = me.email;
  $('#me-role').textContent = t('role.' + me.role);

  // The account's language is the one of its emails and text messages;
  // the page then switches too.
  form('#lang-form', '#lang-msg', async (f) => {
    const lang = f.language.value;
    await api('/me', { method: 'PATCH', body: { language: lang } });
    location.assign('/lang?lang=' + encodeURIComponent(lang) + '&next=' + encodeURIComponent('/account'));
  });

  if (me.role === 'patient') {
    $('#identity').hidden = false;
    const f = $('#identity-form');
    try {
      const p = await api('/patient/profile');
      for (const k of ['given_names', 'family_name', 'birth_date', 'sex', 'phone']) f[k].value = p[k] || f[k].value;
      if (p.weight_kg) f.weight_kg.value = p.weight_kg;
      if (p.height_cm) f.height_cm.value = p.height_cm;
    } catch (e) {
      if (e.status !== 404) throw e; // 404: not filled in yet
      const [given, ...family] = me.name.split(' ');
      f.given_names.value = given; f.family_name.value = family.join(' ');
    }
    form('#identity-form', '#identity-msg', async () => {
      const body = Object.fromEntries(['given_names', 'family_name', 'birth_date', 'sex', 'phone'].map((k) => [k, f[k].value.trim()]));
      if (f.weight_kg.value) body.weight_kg = Number(f.weight_kg.value);
      if (f.height_cm.value) body.height_cm = Number(f.height_cm.value);
      await api('/patient/profile', { method: 'PUT', body });
      note('#identity-msg', t('account.saved'));
    });
  }

  if (await served('/account/notifications')) {
    $('#notifications').hidden = false;
    const n = await api('/account/notifications');
    const f = $('#notify-form');
    f.email.checked = !!n.email; f.sms.checked = !!n.sms;
    form('#notify-form', '#notify-msg', async () => {
      await api('/account/notifications', { method: 'PUT', body: { email: f.email.checked, sms: f.sms.checked } });
      note('#notify-msg', t('account.saved'));
    });
  }

  if (me.role === 'patient' && (await served('/relatives'))) {
    $('#relatives').hidden = false;
    await loadRelatives();
    form('#relative-form', '#relative-msg', async (f) => {
      const body = Object.fromEntries(['given_names', 'family_name', 'birth_date', 'sex', 'relationship'].map((k) => [k, f[k].value.trim()]));
      await api('/relatives', { method: 'POST', body });
      f.reset();
      await loadRelatives();
      note('#relative-msg', t('account.saved'));
    });
  }

  if (await served('/account/password')) {
    $('#password').hidden = false;
    form('#password-form', '#password-msg', async (f) => {
      await api('/account/password', { method: 'POST', body: { current_password: f.current.value, new_password: f.new.value } });
      f.reset();
      note('#password-msg', t('account.passwordchanged'));
    });
  }

  if (await served('/account/sessions')) {
    $('#sessions').hidden = false;
    await loadSessions();
  }

  if (me.role === 'patient' && (await served('/account/access-log'))) {
    $('#access').hidden = false;
    const rows = list(await api('/account/access-log'), 'accesses').slice(0, 100);
    $('#access-rows').replaceChildren(...(rows.length ? rows.map((r) => el('tr', {},
      el('td', {}, fmtDateTime(r.at)),
      el('td', {}, r.who === 'you' ? t('account.accessyou') : [r.who, r.role ? t('role.' + r.role) : ''].filter(Boolean).join(' · ')),
      el('td', {}, `${r.action} · ${r.object_type}`),
      el('td', {}, el('span', { class: r.outcome === 'denied' ? 'badge bad' : 'badge ok' }, t('account.outcome.' + r.outcome)))))
      : [el('tr', {}, el('td', { colspan: '4', class: 'muted' }, t('admin.nothing')))]));
  }
})().catch((e) => show($('#msg'), 'error', e.message));
