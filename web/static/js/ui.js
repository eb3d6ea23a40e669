// ui.js: small DOM helpers shared by the page modules.

import { t } from './i18n.js';

/** el builds an element: el('a', {href: '/x', class: 'b'}, 'text', child). */
export function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') n.className = v;
    else if (k === 'text') n.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') n.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(n.dataset, v);
    else n.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

/** $ finds one element by CSS selector. */
export const $ = (sel, root = document) => root.querySelector(sel);

/** show puts a message (kind: error, ok, warn, info) in box, or clears it. */
export function show(box, kind, text) {
  if (!box) return;
  box.hidden = !text;
  box.className = 'alert ' + kind;
  box.textContent = text || '';
  box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
}

/** empty returns the message shown for an empty list. */
export const empty = (text) => el('p', { class: 'empty' }, text);

/** busy disables a button while fn runs and shows errors in box. */
export async function busy(button, box, fn) {
  if (button) button.disabled = true;
  show(box, 'error', '');
  try {
    return await fn();
  } catch (e) {
    show(box, 'error', e.message || t('error.generic'));
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** pageID is the {id} of the page's route. */
export const pageID = () => document.getElementById('main').dataset.id;

/** badgeClass gives the badge colour of an appointment status. */
export function badgeClass(status) {
  return {
    confirmed: 'badge ok', arrived: 'badge warn', in_progress: 'badge warn', completed: 'badge muted',
    pending_payment: 'badge warn', cancelled: 'badge bad', expired: 'badge muted', no_show: 'badge bad',
  }[status] || 'badge';
}

/** icon returns an inline SVG icon (decorative; the caption is the label). */
export function icon(name) {
  const paths = {
    mic: 'M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zM5 11a7 7 0 0 0 14 0M12 18v3',
    cam: 'M3 7h12v10H3zM15 10l6-3v10l-6-3',
    flip: 'M4 8h13l-3-3M20 16H7l3 3',
    screen: 'M3 4h18v12H3zM8 20h8M12 16v4',
    end: 'M3 14c5-5 13-5 18 0l-3 3-3-2v-3a9 9 0 0 0-6 0v3l-3 2z',
    chat: 'M4 5h16v10H8l-4 4z',
  };
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  const p = document.createElementNS(ns, 'path');
  p.setAttribute('d', paths[name] || '');
  svg.append(p);
  return svg;
}
