// One batch: its configuration, statistics with a chart per run, history, and the live run
// (progress, rate, ETA, phase) fed by the event stream; the latest run's status is in [data-run-status].

import { get, query } from '../api.js';
import { h, replace } from '../dom.js';
import { duration, number, status, t, time } from '../i18n.js';
import { connected, onEvent } from '../live.js';
import { runsChart } from '../chart.js';
import { badge, notify, pager, runActions, table } from '../widgets.js';
import { connectionNames, endpoint } from './batches.js';

const HISTORY_SIZE = 20;
const POLL_MS = 3000;
const CONNECTED_POLL_EVERY = 4;
const SETTLE_MS = 700;
const SETTLE_ATTEMPTS = 15;
const TERMINAL = new Set(['SUCCESS', 'FAILED', 'CANCELLED']);

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(([, value]) => value !== undefined && value !== null && value !== '')
    .map(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]));
}

function json(value) {
  return h('pre', { class: 'mono' }, JSON.stringify(value, null, 2));
}

function config(batch, names) {
  return kv([
    [t('batch.source'), endpoint(names, batch.sourceConnectionId, batch.source)],
    ['SQL', batch.source?.query ? h('pre', { class: 'mono' }, batch.source.query) : null],
    [t('batch.cursorColumn'), batch.source?.cursorColumn],
    [t('batch.target'), endpoint(names, batch.targetConnectionId, batch.target)],
    [t('batch.mode'), batch.target?.mode],
    [t('batch.keyColumns'), (batch.target?.keyColumns || []).join(', ')],
    [t('batch.chunkSize'), batch.chunkSize ? number(batch.chunkSize) : null],
    [t('batch.mapping'), batch.mapping?.length ? json(batch.mapping) : null],
    [t('batch.schedule'), batch.schedule ? json(batch.schedule) : null],
    [t('batch.nextFire'), batch.nextFireTime ? time(batch.nextFireTime) : null],
    [t('batch.lastError'), batch.lastError],
  ]);
}

function tiles(stats) {
  const tile = (label, value) => h('div', { class: 'tile' }, h('div', { class: 'value' }, value),
    h('div', { class: 'label' }, label));
  return h('div', { class: 'tiles' },
    tile(t('stats.totalRuns'), number(stats.totalRuns)),
    tile(t('stats.successRate'), `${(100 * (stats.successRate || 0)).toFixed(1)}%`),
    tile(t('stats.totalRecords'), number(stats.totalRecordsSynced)),
    tile(t('stats.avgDuration'), duration(stats.avgDurationMs)));
}

function historyTable(rows) {
  return table([t('run.id'), t('batch.status'), t('run.trigger'), t('run.requestedBy'), t('run.startedAt'),
    t('run.finishedAt'), t('batch.records'), t('run.message')], rows.map((run) => h('tr', {},
    h('td', { class: 'mono', title: run.runId }, run.runId.slice(0, 8)),
    h('td', {}, badge(run.status)),
    h('td', {}, run.trigger),
    h('td', {}, run.requestedBy),
    h('td', {}, time(run.startedAt)),
    h('td', {}, time(run.finishedAt)),
    h('td', { class: 'num' }, number(run.recordsSynced)),
    h('td', { class: 'message' }, run.message ?? ''))));
}

/** A split run's slices (docs/scale.md): range, state, the worker that ran each, what it moved. */
function sliceTable(slices) {
  const bound = (value, open) => (value === null || value === undefined ? open : String(value));
  return h('div', {}, h('h3', {}, t('run.slices')), table(
    [t('slice.number'), t('slice.range'), t('batch.status'), t('slice.worker'), t('batch.records'), t('run.message')],
    slices.map((part) => h('tr', { dataset: { slice: String(part.slice), sliceStatus: part.status } },
      h('td', { class: 'num' }, String(part.slice)),
      h('td', { class: 'mono' }, `[${bound(part.range.lo, '-∞')}, ${bound(part.range.hi, '+∞')})${part.range.nulls ? ' ∪ NULL' : ''}`),
      h('td', {}, badge(part.status)),
      h('td', { class: 'mono' }, part.workerId ?? '—'),
      h('td', { class: 'num' }, number(part.recordsWritten)),
      h('td', { class: 'message' }, part.status === 'SUCCESS' ? '' : (part.message ?? ''))))));
}

/** The live run panel; `update` takes a run (GET …/runs/{id}) or a lifecycle event of it. */
function livePanel() {
  const runStatus = h('span', { class: 'mono', dataset: { runStatus: '' } }, '—');
  const statusBadge = h('span');
  const bar = h('div');
  const progress = h('div', { class: 'progress' }, bar);
  const details = h('div');
  const message = h('div', { class: 'message' });
  const parts = h('div', { dataset: { slices: '' } });
  const live = { runId: null, status: null, read: 0, written: 0, total: null, rate: null, elapsed: null,
    phase: null, chunks: 0, startedAt: null, finishedAt: null, message: null, slices: null };
  const element = h('div', {}, h('div', { class: 'toolbar' }, statusBadge, runStatus), progress, details, message,
    parts);

  function draw() {
    runStatus.dataset.runStatus = live.status || 'NEVER_RUN';
    replace(runStatus, live.status || 'NEVER_RUN');
    replace(statusBadge, live.runId ? badge(live.status) : h('span', { class: 'muted' }, t('batch.noRun')));
    const fraction = live.total ? Math.min(1, live.written / live.total) : (TERMINAL.has(live.status) ? 1 : 0);
    bar.style.width = `${(fraction * 100).toFixed(1)}%`;
    progress.dataset.status = live.status || '';
    const remaining = live.total && live.rate ? Math.max(0, live.total - live.read) / live.rate : null;
    const running = live.status === 'RUNNING' || live.status === 'PENDING';
    replace(details, live.runId ? kv([
      [t('run.id'), h('span', { class: 'mono' }, live.runId)],
      [t('run.progress'), live.total ? `${number(live.written)} / ${number(live.total)} (${(fraction * 100).toFixed(1)}%)`
        : number(live.written)],
      [t('run.read'), number(live.read)],
      [t('run.chunks'), number(live.chunks)],
      [t('run.rate'), live.rate !== null && running ? `${number(Math.round(live.rate))} ${t('run.rateUnit')}` : null],
      [t('run.eta'), remaining !== null && running ? duration(remaining * 1000) : null],
      [t('run.phase'), live.phase],
      [t('run.startedAt'), time(live.startedAt)],
      [t('run.finishedAt'), live.finishedAt ? time(live.finishedAt) : null],
    ]) : null);
    replace(message, live.message ? h('p', { class: live.status === 'FAILED' ? 'notice error' : 'muted' },
      live.message) : null);
    replace(parts, live.slices ? sliceTable(live.slices) : null);
  }

  function fromRun(run) {
    Object.assign(live, {
      runId: run.runId, status: run.status, read: run.recordsRead, written: run.recordsWritten,
      total: run.totalEstimate, chunks: run.chunks, startedAt: run.startedAt, finishedAt: run.finishedAt,
      message: run.message, phase: run.phase ?? (TERMINAL.has(run.status) ? null : live.phase),
      slices: run.slices ?? null,
    });
    if (TERMINAL.has(run.status)) live.rate = null;
    draw();
  }

  function fromEvent(event) {
    const sameRun = event.runId === live.runId;
    if (event.eventType === 'BatchSyncStarted' || (event.eventType === 'BatchSyncProgress' && !sameRun)) {
      Object.assign(live, { runId: event.runId, status: 'RUNNING', read: 0, written: 0, total: null, rate: null,
        chunks: event.resumedFromChunk || 0, startedAt: event.startedAt ?? null, finishedAt: null, message: null,
        phase: event.phase ?? null });
    }
    if (event.eventType === 'BatchSyncProgress') {
      Object.assign(live, { status: 'RUNNING', read: event.recordsRead, written: event.recordsWritten,
        total: event.totalEstimate ?? live.total, rate: event.recordsPerSecond, elapsed: event.elapsedMs,
        chunks: event.chunk, phase: event.phase ?? live.phase });
    } else if (event.eventType === 'BatchSyncCompleted' && sameRun) {
      let final = event.success ? 'SUCCESS' : 'FAILED';
      if (event.errorCode === 'CANCELLED') final = 'CANCELLED';
      Object.assign(live, { status: final, written: event.recordsSynced, finishedAt: event.syncTime,
        message: event.message, rate: null, phase: null });
    }
    draw();
  }

  draw();
  return { element, fromRun, fromEvent, live };
}

export async function render(view, params) {
  const id = Number.parseInt(params.id, 10);
  if (!Number.isInteger(id) || id < 1) {
    notify(t('common.empty'), true);
    return undefined;
  }
  const names = await connectionNames();
  const panel = livePanel();
  const header = h('h1');
  const configBox = h('div');
  const statsBox = h('div');
  const historyBox = h('div');
  let historyPage = 1;
  let batch = null;

  async function loadRun(runId) {
    if (runId) panel.fromRun(await get(`/integration/batch/${id}/runs/${encodeURIComponent(runId)}`));
  }

  async function loadBatch() {
    batch = await get(`/integration/batch/${id}`);
    replace(header, h('span', {}, batch.name), badge(batch.status),
      h('span', { class: 'spacer' }), runActions(id, batch.status, afterAction));
    replace(configBox, config(batch, names));
    return batch;
  }

  async function loadHistory() {
    const [stats, page] = await Promise.all([
      get(`/integration/batch/${id}/statistics`),
      get(`/integration/batch/${id}/history${query({ pageNum: historyPage, pageSize: HISTORY_SIZE })}`),
    ]);
    replace(statsBox, tiles(stats), runsChart(page.rows));
    replace(historyBox, historyTable(page.rows),
      pager({ num: historyPage, size: HISTORY_SIZE, total: page.total }, (num) => { historyPage = num; loadHistory(); }));
    return page.rows;
  }

  // History and statistics are the projector's view of the events, a moment behind the run itself:
  // after a run ends they are read again until they show it.
  let settling = null;
  function settle(runId, attempt = 0) {
    clearTimeout(settling);
    settling = setTimeout(async () => {
      const rows = await loadHistory().catch(() => []);
      const shown = rows.find((run) => run.runId === runId);
      if ((!shown || !TERMINAL.has(shown.status)) && attempt < SETTLE_ATTEMPTS) settle(runId, attempt + 1);
    }, SETTLE_MS);
  }

  async function refreshAll() {
    try {
      const fresh = await loadBatch();
      const [, rows] = await Promise.all([loadRun(fresh.lastRunId), loadHistory()]);
      const shown = rows.find((run) => run.runId === fresh.lastRunId);
      if (fresh.lastRunId && TERMINAL.has(panel.live.status) && !TERMINAL.has(shown?.status)) settle(fresh.lastRunId);
    } catch (error) {
      notify(error.message, true);
    }
  }

  function afterAction(action, data) {
    if (data?.runId && (action === 'sync' || action === 'retry')) {
      panel.fromRun({ runId: data.runId, status: data.status || 'RUNNING', recordsRead: 0, recordsWritten: 0,
        totalEstimate: null, chunks: 0, startedAt: null, finishedAt: null, message: null });
    }
    refreshAll();
  }

  replace(view, header,
    h('div', { class: 'grid' },
      h('section', { class: 'card' }, h('h2', {}, t('batch.liveRun')), panel.element),
      h('section', { class: 'card' }, h('h2', {}, t('batch.statistics')), statsBox)),
    h('section', { class: 'card' }, h('h2', {}, t('batch.config')), configBox),
    h('section', { class: 'card' }, h('h2', {}, t('batch.history')), historyBox));
  await refreshAll();

  let reload = null;
  const unsubscribe = onEvent((event) => {
    if (event.batchId !== id) return;
    const known = event.runId === panel.live.runId;
    panel.fromEvent(event);
    if (event.eventType === 'BatchSliceCompleted' && known) {
      loadRun(event.runId).catch(() => {});
    } else if (event.eventType === 'BatchSyncCompleted') {
      // the run's row is final before its completion is published: show the batch's new state at once
      clearTimeout(reload);
      reload = null;
      refreshAll();
    } else if ((event.eventType === 'BatchSyncStarted' || !known) && !reload) {
      reload = setTimeout(() => { reload = null; refreshAll(); }, 300);
    }
  });
  // A safety net: an unfinished run is polled, every few seconds while the stream is down and now and then
  // while it is up (an event published before the server's reader was positioned is not streamed).
  let ticks = 0;
  const poll = setInterval(() => {
    const { runId, status: current } = panel.live;
    ticks += 1;
    if (runId && !TERMINAL.has(current) && (!connected() || ticks % CONNECTED_POLL_EVERY === 0)) {
      loadRun(runId).then(() => (TERMINAL.has(panel.live.status) ? refreshAll() : null)).catch(() => {});
    }
  }, POLL_MS);
  document.title = `${batch?.name ?? id} · ${status(batch?.status ?? 'NEVER_RUN')} · batchsync`;
  return () => { unsubscribe(); clearInterval(poll); clearTimeout(reload); clearTimeout(settling); };
}
