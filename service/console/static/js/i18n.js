// Labels in Chinese (default) and English, from /console/labels.json (the server's message catalog).
// The choice is remembered in localStorage.

const KEY = 'batchsync.lang';
let labels = { zh: {}, en: {} };
let lang = localStorage.getItem(KEY) === 'en' ? 'en' : 'zh';

export async function loadLabels() {
  const response = await fetch('labels.json', { cache: 'no-cache' });
  labels = await response.json();
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

/** The label `key` in the current language, `{name}` fields filled from `fields`. */
export function t(key, fields) {
  let text = labels[lang]?.[key] ?? labels.zh?.[key] ?? key;
  for (const [name, value] of Object.entries(fields || {})) {
    text = text.replaceAll(`{${name}}`, String(value));
  }
  return text;
}

export function language() {
  return lang;
}

export function toggleLanguage() {
  lang = lang === 'zh' ? 'en' : 'zh';
  localStorage.setItem(KEY, lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

export function status(value) {
  return t(`status.${value}`);
}

const pad = (n) => String(n).padStart(2, '0');

/** An ISO time in the browser's local time, `YYYY-MM-DD HH:mm:ss`; '—' for none. */
export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function number(value) {
  if (value === null || value === undefined) return '—';
  return Number(value).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-US');
}

/** Milliseconds as `1h 2m 3s` / `4.5s`. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 10000) return `${(ms / 1000).toFixed(1)}s`;
  let rest = Math.round(ms / 1000);
  const hours = Math.floor(rest / 3600); rest -= hours * 3600;
  const minutes = Math.floor(rest / 60); rest -= minutes * 60;
  return [hours ? `${hours}h` : '', minutes ? `${minutes}m` : '', `${rest}s`].filter(Boolean).join(' ');
}
