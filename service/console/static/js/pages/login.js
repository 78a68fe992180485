// Log in by pasting a token; it is kept for this tab only.

import { login } from '../auth.js';
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { notify } from '../widgets.js';

export function render(view, _params, { go }) {
  const input = h('input', {
    name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, id: 'token',
  });
  const form = h('form', {
    class: 'card login',
    onsubmit: (event) => {
      event.preventDefault();
      if (!login(input.value)) {
        notify(t('login.invalid'), true);
        return;
      }
      notify('');
      go('#/batches');
    },
  },
  h('h1', {}, t('login.title')),
  h('label', { for: 'token' }, t('login.token')),
  input,
  h('button', { type: 'submit', class: 'primary' }, t('login.submit')),
  h('p', { class: 'muted' }, t('login.hint')));
  replace(view, form);
  input.focus();
}
