// A form generated from a connector kind's params JSON Schema (pydantic's output): strings, numbers,
// booleans, enums and nested objects get their own inputs; secrets (`"secret": true`) are password
// inputs; anything else (arrays, free-form objects, unions) is a JSON textarea for that key.

import { h } from './dom.js';
import { t } from './i18n.js';

function resolve(schema, root) {
  let current = schema || {};
  for (let depth = 0; current.$ref && depth < 10; depth += 1) {
    const name = current.$ref.replace(/^#\/(\$defs|definitions)\//, '');
    current = { ...(root.$defs?.[name] || root.definitions?.[name] || {}), ...current, $ref: undefined };
  }
  return current;
}

/** The schema without its `null` alternative (pydantic's Optional), and whether it had one. */
function nonNull(schema, root) {
  const resolved = resolve(schema, root);
  const options = resolved.anyOf || resolved.oneOf;
  if (!options) return resolved;
  const rest = options.filter((option) => option.type !== 'null');
  if (rest.length === 1) {
    return { ...resolve(rest[0], root), description: resolved.description, title: resolved.title,
      secret: resolved.secret || rest[0].secret, default: resolved.default };
  }
  return resolved;
}

function kindOf(schema) {
  if (schema.enum) return 'enum';
  if (schema.type === 'object' && schema.properties && Object.keys(schema.properties).length) return 'object';
  if (['string', 'integer', 'number', 'boolean'].includes(schema.type)) return schema.type;
  return 'json';
}

function field(name, schema, root, value, path, required) {
  const full = nonNull(schema, root);
  const kind = kindOf(full);
  const id = `param-${path.concat(name).join('-')}`;
  const help = full.description ? h('div', { class: 'help' }, full.description) : null;
  const label = h('label', { for: id }, name, required ? ' *' : '');
  if (kind === 'object') {
    const nested = objectFields(full, root, value && typeof value === 'object' ? value : {}, path.concat(name));
    return {
      nodes: [h('fieldset', { class: 'nested', dataset: { param: name } }, h('legend', {}, name),
        nested.nodes)],
      read: () => {
        const inner = nested.read();
        return Object.keys(inner).length ? inner : undefined;
      },
    };
  }
  let input;
  let read;
  if (kind === 'enum' || kind === 'boolean') {
    const choices = kind === 'enum' ? full.enum : [true, false];
    input = h('select', { id, name },
      required && kind === 'enum' ? null : h('option', { value: '' }, t('conn.unset')),
      choices.map((choice) => h('option', { value: JSON.stringify(choice), selected: value === choice },
        kind === 'boolean' ? t(choice ? 'conn.yes' : 'conn.no') : String(choice))));
    read = () => (input.value === '' ? undefined : JSON.parse(input.value));
  } else if (kind === 'integer' || kind === 'number') {
    input = h('input', { id, name, type: 'number', step: kind === 'integer' ? 1 : 'any', value: value ?? '' });
    read = () => (input.value === '' ? undefined : Number(input.value));
  } else if (kind === 'string') {
    input = h('input', {
      id, name, type: full.secret ? 'password' : 'text', autocomplete: full.secret ? 'new-password' : 'off',
      value: value ?? '', placeholder: full.default ?? '',
    });
    read = () => (input.value === '' ? undefined : input.value);
  } else {
    input = h('textarea', { id, name, rows: 3, class: 'mono',
      value: value === undefined || value === null ? '' : JSON.stringify(value, null, 2) });
    read = () => {
      if (input.value.trim() === '') return undefined;
      try {
        return JSON.parse(input.value);
      } catch {
        throw new Error(`${name}: ${t('conn.invalidJson')}`);
      }
    };
  }
  input.dataset.param = name;
  return { nodes: [label, input, help], read };
}

function objectFields(schema, root, values, path) {
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, property]) => [name,
    field(name, property, root, values[name], path, required.has(name))]);
  return {
    nodes: fields.flatMap(([, built]) => built.nodes),
    read: () => {
      const result = {};
      for (const [name, built] of fields) {
        const value = built.read();
        if (value !== undefined) result[name] = value;
      }
      return result;
    },
  };
}

/** `{nodes, read}` for a params schema; read() throws an Error naming a key whose JSON does not parse. */
export function paramsForm(schema, values) {
  return objectFields(resolve(schema, schema), schema, values || {}, []);
}

/** A JSON textarea for kinds without a schema. */
export function jsonField(id, value) {
  const input = h('textarea', { id, name: id, rows: 6, class: 'mono',
    value: value && Object.keys(value).length ? JSON.stringify(value, null, 2) : '' });
  return {
    input,
    read: () => {
      if (input.value.trim() === '') return {};
      let parsed;
      try {
        parsed = JSON.parse(input.value);
      } catch {
        throw new Error(t('conn.invalidJson'));
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(t('conn.invalidJson'));
      return parsed;
    },
  };
}
