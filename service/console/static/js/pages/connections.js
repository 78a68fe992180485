// Connections: the list with edit and test, and a create/edit form whose params are generated from the
// kind's JSON Schema (GET /integration/connection/types); kinds without one get a JSON textarea.

import { api, get, query } from '../api.js';
import { can } from '../auth.js';
import { h, replace } from '../dom.js';
import { t, time } from '../i18n.js';
import { jsonField, paramsForm } from '../schema_form.js';
import { notify, pager, table } from '../widgets.js';

const PAGE_SIZE = 20;
const KNOWN_KINDS = ['postgresql', 'mysql', 'sqlite', 'csv', 'jsonl', 'http', 'kafka'];

/** kind → {params: JSON Schema or null, url: {schemes, example, required} or null (no URL), known: bool}. */
async function connectionTypes() {
  let answer = null;
  try {
    answer = await get('/integration/connection/types');
  } catch {
    answer = null;
  }
  const kinds = new Map();
  for (const item of Array.isArray(answer) ? answer : []) {
    if (typeof item?.type !== 'string') continue;
    kinds.set(item.type, {
      params: item.params && typeof item.params === 'object' ? item.params : null, url: item.url ?? null, known: true,
    });
  }
  if (!kinds.size) KNOWN_KINDS.forEach((kind) => kinds.set(kind, { params: null, url: null, known: false }));
  return kinds;
}

export async function renderList(view, _params, { go }) {
  let num = 1;
  const list = h('div', {}, h('p', { class: 'muted' }, t('common.loading')));

  async function test(id, button) {
    button.disabled = true;
    try {
      notify((await api('POST', `/integration/connection/${id}/test`)).message);
    } catch (error) {
      notify(error.message, true);
    } finally {
      button.disabled = false;
    }
  }

  async function load() {
    try {
      const page = await get(`/integration/connection/list${query({ pageNum: num, pageSize: PAGE_SIZE })}`);
      const rows = page.rows.map((conn) => h('tr', { dataset: { connectionId: String(conn.id) } },
        h('td', {}, conn.name),
        h('td', {}, conn.type),
        h('td', { class: 'mono message' }, conn.url ?? (conn.params?.path || '')),
        h('td', {}, time(conn.updatedAt)),
        h('td', { class: 'actions' },
          can('integration:connection:edit') ? [
            h('button', { type: 'button', dataset: { action: 'edit' },
              onclick: () => go(`#/connections/${conn.id}/edit`) }, t('action.edit')),
            h('button', { type: 'button', dataset: { action: 'test' },
              onclick: (event) => test(conn.id, event.currentTarget) }, t('action.test')),
          ] : null)));
      replace(list, table([t('conn.name'), t('conn.type'), t('conn.url'), t('conn.updatedAt'), t('batch.actions')],
        rows), pager({ num, size: PAGE_SIZE, total: page.total }, (next) => { num = next; load(); }));
    } catch (error) {
      notify(error.message, true);
    }
  }

  replace(view, h('h1', {}, t('nav.connections')),
    h('div', { class: 'toolbar' },
      can('integration:connection:add')
        ? h('button', { type: 'button', class: 'primary', dataset: { action: 'create' },
          onclick: () => go('#/connections/new') }, t('action.create')) : null,
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', onclick: () => load() }, t('common.refresh'))),
    list);
  await load();
}

export async function renderForm(view, params, { go }) {
  const editing = params.id ? Number.parseInt(params.id, 10) : null;
  const [kinds, existing] = await Promise.all([
    connectionTypes(),
    editing ? get(`/integration/connection/${editing}`) : Promise.resolve(null),
  ]);
  const name = h('input', { id: 'conn-name', name: 'name', type: 'text', required: true, maxlength: 200,
    value: existing?.name ?? '' });
  const type = h('select', { id: 'conn-type', name: 'type' },
    [...kinds.keys()].map((kind) => h('option', { value: kind, selected: existing?.type === kind }, kind)));
  const url = h('input', { id: 'conn-url', name: 'url', type: 'text', autocomplete: 'off', value: existing?.url ?? '' });
  const urlLabel = h('label', { for: 'conn-url' }, t('conn.url'));
  const paramsBox = h('fieldset', { class: 'params' });
  const options = jsonField('options', existing?.options);
  let readParams = () => ({});

  function drawParams() {
    const kind = kinds.get(type.value);
    const schema = kind?.params;
    // A kind known to take no URL hides the field; an unknown kind (no types answer) keeps it.
    url.hidden = Boolean(kind?.known && !kind.url);
    urlLabel.hidden = url.hidden;
    url.required = Boolean(kind?.url?.required);
    url.placeholder = kind?.url?.example ?? '';
    const values = existing && existing.type === type.value ? existing.params : {};
    if (schema && schema.properties) {
      const built = paramsForm(schema, values);
      replace(paramsBox, h('legend', {}, t('conn.params')), built.nodes);
      readParams = built.read;
      paramsBox.hidden = built.nodes.length === 0;
    } else {
      const raw = jsonField('params', values);
      replace(paramsBox, h('legend', {}, t('conn.paramsJson')), raw.input);
      readParams = raw.read;
      paramsBox.hidden = false;
    }
  }
  type.addEventListener('change', drawParams);
  drawParams();

  const form = h('form', {
    class: 'connection card',
    onsubmit: async (event) => {
      event.preventDefault();
      let body;
      try {
        body = { name: name.value, type: type.value, params: readParams(), options: options.read() };
      } catch (error) {
        notify(error.message, true);
        return;
      }
      if (!url.hidden && url.value.trim()) body.url = url.value.trim();
      try {
        const answer = editing ? await api('PUT', `/integration/connection/${editing}`, body)
          : await api('POST', '/integration/connection', body);
        notify(`${t('conn.saved')}: ${answer.data?.name ?? ''}`);
        go('#/connections');
      } catch (error) {
        notify(error.message, true);
      }
    },
  },
  h('label', { for: 'conn-name' }, t('conn.name')), name,
  h('label', { for: 'conn-type' }, t('conn.type')), type,
  urlLabel, url,
  paramsBox,
  h('label', { for: 'options' }, t('conn.options')), options.input,
  editing ? h('div', { class: 'help' }, t('conn.secretKept')) : null,
  h('div', { class: 'form-actions' },
    h('button', { type: 'submit', class: 'primary' }, t('common.save')),
    h('button', { type: 'button', onclick: () => go('#/connections') }, t('common.cancel'))));
  replace(view, h('h1', {}, t(editing ? 'conn.editTitle' : 'conn.newTitle')), form);
}
