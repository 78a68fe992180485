// Small pieces every page uses: status badges, notices, pagers, the run actions.

import { api } from './api.js';
import { can } from './auth.js';
import { h, replace } from './dom.js';
import { number, status, t } from './i18n.js';

export function badge(value) {
  return h('span', { class: 'badge', dataset: { status: value || '' } }, value ? status(value) : '—');
}

export function notify(message, isError = false) {
  const box = document.getElementById('notice');
  replace(box, message);
  box.classList.toggle('error', isError);
  box.hidden = !message;
}

/** Forget an error when the operator moves on; a success notice stays until the next one. */
export function clearError() {
  if (document.getElementById('notice').classList.contains('error')) notify('');
}

export function pager(page, onChange) {
  const pages = Math.max(1, Math.ceil(page.total / page.size));
  return h('div', { class: 'pager' },
    h('span', { class: 'muted' }, t('common.page', { num: page.num, pages, total: number(page.total) })),
    h('button', { type: 'button', disabled: page.num <= 1, onclick: () => onChange(page.num - 1) }, t('common.prev')),
    h('button', { type: 'button', disabled: page.num >= pages, onclick: () => onChange(page.num + 1) },
      t('common.next')));
}

export function table(headers, rows, emptyText = t('common.empty')) {
  const body = rows.length ? rows
    : [h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, emptyText))];
  return h('div', { class: 'table-wrap' },
    h('table', {}, h('thead', {}, h('tr', {}, headers.map((name) => h('th', {}, name)))), h('tbody', {}, body)));
}

const RUN_ACTIONS = [
  { action: 'sync', perm: 'integration:batch:sync', path: 'sync?wait=0', label: 'action.sync', primary: true },
  { action: 'retry', perm: 'integration:batch:retry', path: 'retry?wait=0', label: 'action.retry', when: 'FAILED' },
  { action: 'cancel', perm: 'integration:batch:sync', path: 'cancel', label: 'action.cancel', when: 'RUNNING' },
];

/** The sync / retry / cancel buttons a token may use for a batch in `batchStatus` (others are not shown). */
export function runActions(batchId, batchStatus, afterwards) {
  return RUN_ACTIONS
    .filter((item) => can(item.perm) && (!item.when || item.when === batchStatus))
    .map((item) => h('button', {
      type: 'button',
      class: item.primary ? 'primary' : (item.action === 'cancel' ? 'danger' : ''),
      dataset: { action: item.action },
      onclick: async (event) => {
        const button = event.currentTarget;
        button.disabled = true;
        try {
          const answer = await api('POST', `/integration/batch/${batchId}/${item.path}`);
          notify(answer.message);
          afterwards(item.action, answer.data);
        } catch (error) {
          notify(error.message, true);
        } finally {
          button.disabled = false;
        }
      },
    }, t(item.label)));
}
