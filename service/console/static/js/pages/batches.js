// The batches: name, source → target, mode, status, last sync, records, next fire, and the run actions.

import { get, query } from '../api.js';
import { can } from '../auth.js';
import { h, replace } from '../dom.js';
import { number, t, time } from '../i18n.js';
import { onEvent } from '../live.js';
import { badge, notify, pager, runActions, table } from '../widgets.js';

const PAGE_SIZE = 20;
const STATUSES = ['NEVER_RUN', 'RUNNING', 'SUCCESS', 'FAILED', 'CANCELLED'];

export async function connectionNames() {
  if (!can('integration:connection:list')) return new Map();
  try {
    const page = await get('/integration/connection/list?pageSize=500');
    return new Map(page.rows.map((row) => [row.id, row.name]));
  } catch {
    return new Map();
  }
}

export function endpoint(names, connectionId, spec) {
  const where = spec?.table || (spec?.query ? 'SQL' : '');
  return `${names.get(connectionId) ?? `#${connectionId}`}${where ? ` / ${where}` : ''}`;
}

function row(batch, names, reload) {
  return h('tr', { dataset: { batchId: String(batch.id) } },
    h('td', {}, h('a', { href: `#/batch/${encodeURIComponent(batch.id)}` }, batch.name)),
    h('td', {}, endpoint(names, batch.sourceConnectionId, batch.source), ' → ',
      endpoint(names, batch.targetConnectionId, batch.target)),
    h('td', {}, batch.target?.mode ?? '—'),
    h('td', { class: 'status' }, badge(batch.status)),
    h('td', { class: 'last-sync' }, time(batch.lastSyncTime)),
    h('td', { class: 'num records' }, number(batch.lastRecordsSynced)),
    h('td', {}, batch.nextFireTime ? time(batch.nextFireTime) : '—'),
    h('td', { class: 'actions' }, runActions(batch.id, batch.status, reload)));
}

export async function render(view) {
  const state = { num: 1, name: '', status: '' };
  const list = h('div', {}, h('p', { class: 'muted' }, t('common.loading')));
  const names = await connectionNames();

  async function load() {
    try {
      const page = await get(`/integration/batch/list${query({
        pageNum: state.num, pageSize: PAGE_SIZE, name: state.name, status: state.status,
      })}`);
      const rows = page.rows.map((batch) => row(batch, names, () => load()));
      replace(list, table([t('batch.name'), t('batch.route'), t('batch.mode'), t('batch.status'), t('batch.lastSync'),
        t('batch.records'), t('batch.nextFire'), t('batch.actions')], rows),
      pager({ num: state.num, size: PAGE_SIZE, total: page.total }, (num) => { state.num = num; load(); }));
    } catch (error) {
      notify(error.message, true);
    }
  }

  const search = h('input', { type: 'search', placeholder: t('common.search'), 'aria-label': t('common.search') });
  const filter = h('select', { 'aria-label': t('batch.status') },
    h('option', { value: '' }, t('common.allStatuses')),
    STATUSES.map((value) => h('option', { value }, t(`status.${value}`))));
  search.addEventListener('change', () => { state.name = search.value; state.num = 1; load(); });
  filter.addEventListener('change', () => { state.status = filter.value; state.num = 1; load(); });
  replace(view,
    h('h1', {}, t('nav.batches')),
    h('div', { class: 'toolbar' }, search, filter, h('span', { class: 'spacer' }),
      h('button', { type: 'button', onclick: () => load() }, t('common.refresh'))),
    list);
  await load();

  let pending = null;
  const unsubscribe = onEvent((event) => {
    const tr = list.querySelector(`tr[data-batch-id="${CSS.escape(String(event.batchId))}"]`);
    if (!tr) return;
    if (event.eventType === 'BatchSyncProgress') {
      replace(tr.querySelector('td.status'), badge('RUNNING'));
      replace(tr.querySelector('td.records'), number(event.recordsWritten));
    } else if (!pending) {
      pending = setTimeout(() => { pending = null; load(); }, 300);
    }
  });
  return () => { unsubscribe(); clearTimeout(pending); };
}
