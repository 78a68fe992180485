// Failed runs across all batches, newest first, with their messages (GET /integration/run/list?status=FAILED).

import { get, query } from '../api.js';
import { h, replace } from '../dom.js';
import { number, t, time } from '../i18n.js';
import { onEvent } from '../live.js';
import { notify, pager, table } from '../widgets.js';

const PAGE_SIZE = 20;

export async function render(view) {
  let num = 1;
  const list = h('div', {}, h('p', { class: 'muted' }, t('common.loading')));

  async function load() {
    try {
      const page = await get(`/integration/run/list${query({ status: 'FAILED', pageNum: num, pageSize: PAGE_SIZE })}`);
      const rows = page.rows.map((run) => h('tr', { dataset: { runId: run.runId, batchId: String(run.batchId) } },
        h('td', {}, h('a', { href: `#/batch/${encodeURIComponent(run.batchId)}` }, run.batchName ?? `#${run.batchId}`)),
        h('td', { class: 'mono', title: run.runId }, run.runId.slice(0, 8)),
        h('td', {}, time(run.startedAt)),
        h('td', {}, time(run.finishedAt)),
        h('td', { class: 'num' }, number(run.recordsSynced)),
        h('td', { class: 'mono' }, run.errorCode ?? ''),
        h('td', { class: 'message run-message' }, run.message ?? '')));
      replace(list, table([t('run.batch'), t('run.id'), t('run.startedAt'), t('run.finishedAt'), t('batch.records'),
        t('run.errorCode'), t('run.message')], rows),
      pager({ num, size: PAGE_SIZE, total: page.total }, (next) => { num = next; load(); }));
    } catch (error) {
      notify(error.message, true);
    }
  }

  replace(view, h('h1', {}, t('failed.title')),
    h('div', { class: 'toolbar' }, h('span', { class: 'spacer' }),
      h('button', { type: 'button', onclick: () => load() }, t('common.refresh'))),
    list);
  await load();
  // The list is the projector's view, a moment behind the event: read it now and once more shortly after.
  const timers = [];
  const unsubscribe = onEvent((event) => {
    if (event.eventType === 'BatchSyncCompleted' && !event.success) {
      timers.push(setTimeout(load, 300), setTimeout(load, 2000));
    }
  });
  return () => { unsubscribe(); timers.forEach(clearTimeout); };
}
