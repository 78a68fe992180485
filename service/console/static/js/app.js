// The console's shell: labels, the navigation the token may use, the hash router and the live stream.

import { whenUnauthorized } from './api.js';
import { can, claims, expired, logout, token } from './auth.js';
import { h, replace } from './dom.js';
import { loadLabels, t, toggleLanguage } from './i18n.js';
import { onState, startLive, stopLive } from './live.js';
import { clearError, notify } from './widgets.js';
import * as batch from './pages/batch.js';
import * as batches from './pages/batches.js';
import * as connections from './pages/connections.js';
import * as failed from './pages/failed.js';
import * as login from './pages/login.js';

const ROUTES = [
  { pattern: /^#\/login$/, render: login.render, open: true },
  { pattern: /^#\/batches$/, render: batches.render, nav: 'nav.batches', perm: 'integration:batch:list' },
  { pattern: /^#\/batch\/(?<id>\d+)$/, render: batch.render, perm: 'integration:batch:query' },
  { pattern: /^#\/connections$/, render: connections.renderList, nav: 'nav.connections',
    perm: 'integration:connection:list' },
  { pattern: /^#\/connections\/new$/, render: connections.renderForm, perm: 'integration:connection:add' },
  { pattern: /^#\/connections\/(?<id>\d+)\/edit$/, render: connections.renderForm,
    perm: 'integration:connection:edit' },
  { pattern: /^#\/failed$/, render: failed.render, nav: 'nav.failed', perm: 'integration:batch:list' },
];
const NAV = [
  { hash: '#/batches', label: 'nav.batches', perm: 'integration:batch:list', active: /^#\/batch/ },
  { hash: '#/connections', label: 'nav.connections', perm: 'integration:connection:list', active: /^#\/connections/ },
  { hash: '#/failed', label: 'nav.failed', perm: 'integration:batch:list', active: /^#\/failed/ },
];

const view = document.getElementById('view');
let cleanup = null;
let routeSeq = 0;

function go(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function loggedIn() {
  return Boolean(token()) && !expired();
}

function drawChrome() {
  const current = window.location.hash;
  document.title = t('app.title');
  replace(document.getElementById('brand'), t('app.title'));
  replace(document.getElementById('nav'), loggedIn() ? [
    ...NAV.filter((item) => can(item.perm)).map((item) => h('a', {
      href: item.hash, class: item.active.test(current) ? 'active' : null,
    }, t(item.label))),
    h('a', { href: '/docs', target: '_blank', rel: 'noopener' }, t('nav.docs')),
  ] : []);
  replace(document.getElementById('who'), loggedIn() ? String(claims()?.sub ?? '') : '');
  replace(document.getElementById('lang'), t('nav.language'));
  const logoutButton = document.getElementById('logout');
  replace(logoutButton, t('nav.logout'));
  logoutButton.hidden = !loggedIn();
}

function drawLive(state) {
  const badge = document.getElementById('live');
  badge.hidden = state === 'off';
  badge.className = `live ${state === 'connected' ? 'on' : 'off'}`;
  const key = { connected: 'live.connected', disconnected: 'live.disconnected', forbidden: 'live.forbidden' }[state];
  replace(badge, key ? t(key) : '');
}

async function route() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const hash = window.location.hash || '#/batches';
  if (!loggedIn()) {
    if (token() && expired()) notify(t('login.expired'), true);
    logout();
    stopLive();
    drawChrome();
    if (hash !== '#/login') {
      window.location.hash = '#/login';
      return;
    }
  } else if (hash === '#/login' || !ROUTES.some((r) => r.pattern.test(hash))) {
    const first = NAV.find((item) => can(item.perm));
    window.location.hash = first ? first.hash : '#/batches';
    return;
  }
  if (loggedIn() && can('integration:batch:query')) startLive();
  drawChrome();
  const match = ROUTES.map((r) => ({ r, m: r.pattern.exec(hash) })).find(({ m }) => m);
  // Each page renders into a container of its own: a page still loading when the operator moves on
  // fills a detached container, and its live subscriptions are dropped as soon as it finishes.
  const page = h('div', {}, h('p', { class: 'muted' }, t('common.loading')));
  replace(view, page);
  routeSeq += 1;
  const mine = routeSeq;
  try {
    const result = await match.r.render(page, match.m.groups || {}, { go });
    const stop = typeof result === 'function' ? result : null;
    if (mine === routeSeq) cleanup = stop;
    else if (stop) stop();
  } catch (error) {
    if (mine === routeSeq) notify(error.message, true);
  }
}

async function start() {
  await loadLabels();
  whenUnauthorized(() => go('#/login'));
  document.getElementById('lang').addEventListener('click', () => { toggleLanguage(); route(); });
  document.getElementById('logout').addEventListener('click', () => {
    logout();
    stopLive();
    notify('');
    go('#/login');
  });
  onState(drawLive);
  window.addEventListener('hashchange', () => { clearError(); route(); });
  await route();
}

start();
