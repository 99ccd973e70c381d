import { get, session } from '../api.js';
import { h } from '../ui.js';

export function render(main, { query, go }) {
  const error = h('div', { id: 'signin-error', role: 'alert' });
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true,
    spellcheck: 'false', 'aria-describedby': 'token-hint signin-error',
  });
  const submit = h('button', { class: 'btn btn-primary', type: 'submit' }, 'Sign in');
  const form = h('form', { novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'token' }, 'API token'),
      input,
      h('span', { id: 'token-hint', class: 'hint' },
        'The token of this fleetup service: FLEETUP_API_TOKEN, or the file api-token in its data directory. ',
        'It is kept in this browser tab only, until you sign out or close the tab.')),
    error,
    submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.replaceChildren();
    const token = input.value.trim();
    if (!token) {
      error.append(h('p', { class: 'alert alert-error' }, 'Enter the API token.'));
      input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      // Any authenticated read proves the token; the smallest one will do.
      await get('/devices?limit=1', { token });
      session.set(token);
      const next = query.get('next');
      go(`#${next && next.startsWith('/') && next !== '/signin' ? next : '/fleet'}`);
    } catch (err) {
      const msg = err.status === 401 ? 'This token is not valid for this service.' : err.message;
      error.append(h('p', { class: 'alert alert-error' }, msg));
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      input.select();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });
  main.append(h('section', { class: 'signin card', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in to fleetup'),
    h('p', { class: 'muted' }, 'Watch and steer firmware rollouts across your network fleet.'),
    form));
  input.focus();
}
