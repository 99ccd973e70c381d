// Rollouts: newest first, with state and progress; refreshed while any is active.
import { get } from '../api.js';
import { h, clear, td, badge, progressStack, progressText, relTime, dateTime, errorBox } from '../ui.js';
import { vocabulary } from '../vocab.js';

export function render(main) {
  const tbody = h('tbody');
  const errorSlot = h('div');
  main.append(
    h('div', { class: 'page-head' },
      h('div', null, h('h1', null, 'Rollouts'), h('p', { class: 'muted' }, 'Every rollout submitted to this service, newest first.')),
      h('a', { class: 'btn btn-primary', href: '#/new' }, 'New rollout')),
    errorSlot,
    h('section', { class: 'card', 'aria-label': 'Rollouts' },
      h('div', { class: 'table-wrap' },
        h('table', { class: 'responsive', id: 'rollouts' },
          h('thead', null, h('tr', null, ['Rollout', 'State', 'Progress', 'Created', 'Finished'].map((c) => h('th', { scope: 'col' }, c)))),
          tbody))));

  let alive = true;
  let timer = null;
  async function load() {
    try {
      const [{ rollouts }, V] = await Promise.all([get('/rollouts'), vocabulary()]);
      if (!alive) return;
      errorSlot.replaceChildren();
      clear(tbody);
      for (const r of rollouts) {
        tbody.append(h('tr', { dataset: { rollout: r.id } },
          td('Rollout', h('a', { href: `#/rollouts/${encodeURIComponent(r.id)}`, class: 'device-name' }, r.name), h('div', { class: 'muted small mono' }, r.id)),
          td('State', badge(r.state), r.halt_reason ? h('div', { class: 'err' }, r.halt_reason) : null),
          td('Progress', h('div', { class: 'progress-cell' }, progressStack(r.progress), h('span', { class: 'small muted' }, progressText(r.progress)))),
          td('Created', relTime(r.created_at)),
          td('Finished', r.finished_at ? h('time', { datetime: r.finished_at }, dateTime(r.finished_at)) : h('span', { class: 'muted' }, '–'))));
      }
      if (rollouts.length === 0) {
        tbody.append(h('tr', null, h('td', { colspan: 5, class: 'empty' }, 'No rollout yet. ', h('a', { href: '#/new' }, 'Start one from a playbook'), '.')));
      }
      clearTimeout(timer);
      const delay = rollouts.some((r) => V.active.has(r.state)) ? 3000 : 15000;
      timer = setTimeout(load, delay);
    } catch (err) {
      if (alive && err.status !== 401) errorSlot.replaceChildren(errorBox(err, 'Cannot load the rollouts'));
      clearTimeout(timer);
      if (alive) timer = setTimeout(load, 10000);
    }
  }
  load();
  return () => { alive = false; clearTimeout(timer); };
}
