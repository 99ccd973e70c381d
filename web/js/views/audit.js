// Audit log: every mutating API call (who, what, when, the answer), newest first, filtered by
// token name, older entries a page at a time (`before` = the last id shown).
import { get } from '../api.js';
import { h, td, relTime, dateTime, errorBox } from '../ui.js';

const PAGE = 50;
// Token names as the service allows them (`POST /tokens`).
const NAME = '[A-Za-z0-9._@\\-]{1,64}';

/** The answer's status as a badge: 2xx done, 403 refused by the role, other 4xx/5xx failed. */
function result(status) {
  const [tone, word] = status >= 200 && status < 300 ? ['ok', 'done']
    : status === 403 ? ['bad', 'refused'] : status >= 500 ? ['bad', 'error'] : ['warn', 'failed'];
  return h('span', { class: `badge ${tone}`, 'data-status': status }, `${status} ${word}`);
}

export function render(main, { query, go }) {
  const by = query.get('by') || '';
  const tbody = h('tbody');
  const errorSlot = h('div');
  const status = h('p', { id: 'audit-status', class: 'muted small', role: 'status' });
  const more = h('button', { type: 'button', class: 'btn', id: 'audit-more', hidden: true }, 'Show older entries');
  const name = h('input', {
    id: 'audit-by', type: 'text', value: by, autocomplete: 'off', spellcheck: 'false', pattern: NAME,
    placeholder: 'Any token', 'aria-describedby': 'audit-by-hint',
  });
  const table = h('table', { class: 'responsive', id: 'audit' },
    h('thead', null, h('tr', null, ['When', 'Token', 'Call', 'Result'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the audit log' },
    h('div', { class: 'field grow' },
      h('label', { for: 'audit-by' }, 'Token name'), name,
      h('span', { id: 'audit-by-hint', class: 'hint' }, 'Only the calls made with the token of this name.')),
    h('button', { type: 'submit', class: 'btn' }, 'Filter'),
    by ? h('a', { class: 'btn btn-quiet', href: '#/audit' }, 'Show all') : null);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!name.checkValidity()) {
      name.setAttribute('aria-invalid', 'true');
      name.reportValidity();
      return;
    }
    const v = name.value.trim();
    go(v ? `#/audit?by=${encodeURIComponent(v)}` : '#/audit');
  });
  const card = h('section', { class: 'card', 'aria-label': 'Audit log entries' },
    form,
    h('div', { class: 'table-wrap' }, table),
    status,
    more);
  main.append(
    h('div', { class: 'page-head' },
      h('div', null, h('h1', null, 'Audit log'),
        h('p', { class: 'muted' }, 'Every call that changed something, or tried to: the token that made it and its role, the method and path, when, and the answer. Newest first.'))),
    errorSlot,
    card);

  let alive = true;
  let shown = 0;
  let oldest = null;
  async function load() {
    more.disabled = true;
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (by) params.set('by', by);
    if (oldest !== null) params.set('before', String(oldest));
    try {
      const { entries } = await get(`/audit?${params}`);
      if (!alive) return;
      errorSlot.replaceChildren();
      for (const e of entries) {
        tbody.append(h('tr', { dataset: { id: e.id, token: e.token, status: e.status } },
          td('When', h('time', { datetime: e.at, title: dateTime(e.at) }, dateTime(e.at)), h('div', { class: 'muted small' }, relTime(e.at))),
          td('Token', h('strong', null, e.token), h('div', { class: 'muted small' }, e.role)),
          td('Call', h('span', { class: 'mono' }, e.method, ' ', e.path)),
          td('Result', result(e.status))));
      }
      shown += entries.length;
      if (entries.length) oldest = entries[entries.length - 1].id;
      const end = entries.length < PAGE;
      more.hidden = end;
      more.disabled = false;
      if (shown === 0) {
        tbody.append(h('tr', null, h('td', { colspan: 4, class: 'empty' },
          by ? `No call by the token “${by}” is in the audit log.` : 'No call has changed anything yet.')));
      }
      status.textContent = shown === 0 ? '' : `${shown} ${shown === 1 ? 'entry' : 'entries'}${end ? ', the oldest included' : ''}.`;
    } catch (err) {
      if (!alive || err.status === 401) return;
      more.disabled = false;
      if (err.status === 403) {
        // The audit log may be kept for admins: say so, instead of an empty table.
        card.hidden = true;
        errorSlot.replaceChildren(h('div', { class: 'alert alert-error', role: 'alert', id: 'audit-forbidden' },
          h('strong', null, 'This token may not read the audit log'),
          `Sign in with an admin token to see who changed what. (${err.message})`));
        return;
      }
      errorSlot.replaceChildren(errorBox(err, 'Cannot load the audit log'));
    }
  }
  more.addEventListener('click', load);
  load();
  return () => { alive = false; };
}
