// i18n.js: the page's strings (the catalogue the server embedded in the
// page) and locale-aware formatting of dates, times and money with Intl.

const node = document.getElementById('catalogue');
const strings = node ? JSON.parse(node.textContent) : {};

/** lang is the page's language code (fr, en, ...). */
export const lang = document.documentElement.lang || 'fr';
/** locale is the BCP 47 locale used by Intl (fr-FR, en-GB, ...). */
export const locale = strings['locale'] || lang;

/** t returns the text of key, with {name} placeholders replaced from vars. */
export function t(key, vars) {
  let s = strings[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

const cache = new Map();
function format(opts) {
  const k = JSON.stringify(opts);
  if (!cache.has(k)) cache.set(k, new Intl.DateTimeFormat(locale, opts));
  return cache.get(k);
}

const asDate = (d) => (d instanceof Date ? d : new Date(d));

/** fmtDate: "lundi 3 mars 2026". */
export const fmtDate = (d) => format({ weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' }).format(asDate(d));
/** fmtShortDate: "lun. 3 mars". */
export const fmtShortDate = (d) => format({ weekday: 'short', day: 'numeric', month: 'short' }).format(asDate(d));
/** fmtTime: "14:30". */
export const fmtTime = (d) => format({ hour: '2-digit', minute: '2-digit' }).format(asDate(d));
/** fmtDateTime: "lun. 3 mars 2026, 14:30". */
export const fmtDateTime = (d) => format({ weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' }).format(asDate(d));

/** fmtMoney formats an amount in cents of currency. */
export function fmtMoney(cents, currency = 'EUR') {
  return new Intl.NumberFormat(locale, { style: 'currency', currency }).format((cents || 0) / 100);
}

/** fmtNumber formats a number with at most digits decimals. */
export const fmtNumber = (n, digits = 1) => new Intl.NumberFormat(locale, { maximumFractionDigits: digits }).format(n || 0);

/** plural picks key.one, key.other, ... for n by the language's rules. */
export function plural(key, n, vars = {}) {
  return t(key + '.' + new Intl.PluralRules(locale).select(n), { n, ...vars });
}

/** fmtPercent formats a ratio (0.25 -> 25 %). */
export const fmtPercent = (r) => new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 1 }).format(r || 0);

const specialties = new Map();

/** knowSpecialties remembers the directory's specialties ({code, fr, en}). */
export function knowSpecialties(list) {
  for (const s of list) specialties.set(s.code, s);
}

/** specialtyName gives a specialty (object or code) in the page's language. */
export function specialtyName(s) {
  if (!s) return '';
  if (typeof s === 'string') s = specialties.get(s) || { code: s };
  return s[lang] || s.en || s.code;
}

/** statusLabel gives an appointment status in words. */
export const statusLabel = (status) => t('status.' + status);
