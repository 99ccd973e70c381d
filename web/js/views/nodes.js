// Nodes: the fleetup nodes that share the database, and the site agents with their sites,
// versions, last heartbeat, the images they hold checked and their transfers.
import { get } from '../api.js';
import { h, clear, td, bytes, badge, errorBox } from '../ui.js';

function seconds(s) {
  if (s < 1) return 'just now';
  if (s < 120) return `${Math.round(s)} s ago`;
  return `${Math.round(s / 60)} min ago`;
}

export function render(main) {
  const nodesBody = h('tbody');
  const agentsBody = h('tbody');
  const errorSlot = h('div');
  const database = h('span', { id: 'nodes-database' });
  main.append(
    h('div', { class: 'page-head' },
      h('div', null, h('h1', null, 'Nodes and agents'),
        h('p', { class: 'muted' }, 'The fleetup nodes that share this database, and the site agents that serve images near their devices and drive them. Database: ', database))),
    errorSlot,
    h('section', { class: 'card', 'aria-labelledby': 'nodes-title' },
      h('h2', { id: 'nodes-title' }, 'Nodes'),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'responsive', id: 'nodes' },
          h('thead', null, h('tr', null, ['Node', 'Version', 'Last heartbeat', 'Rollouts it drives', 'API'].map((c) => h('th', { scope: 'col' }, c)))),
          nodesBody))),
    h('section', { class: 'card', 'aria-labelledby': 'agents-title' },
      h('h2', { id: 'agents-title' }, 'Site agents'),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'responsive', id: 'agents' },
          h('thead', null, h('tr', null, ['Agent', 'Site', 'State', 'Version', 'Last heartbeat', 'TFTP', 'Images', 'Transfers', 'Device jobs'].map((c) => h('th', { scope: 'col' }, c)))),
          agentsBody))));

  let alive = true;
  async function load() {
    try {
      const [n, a] = await Promise.all([get('/nodes'), get('/agents')]);
      if (!alive) return;
      errorSlot.replaceChildren();
      database.textContent = n.database;
      clear(nodesBody);
      for (const node of n.nodes.filter((x) => x.kind !== 'agent')) {
        nodesBody.append(h('tr', { dataset: { node: node.name } },
          td('Node', h('span', { class: 'device-name' }, node.name)),
          td('Version', node.version),
          td('Last heartbeat', seconds(node.heartbeat_age_seconds)),
          td('Rollouts it drives', node.rollouts.length
            ? node.rollouts.map((id) => h('a', { href: `#/rollouts/${encodeURIComponent(id)}`, class: 'mono' }, id, ' '))
            : h('span', { class: 'muted' }, 'none')),
          td('API', node.url ? h('span', { class: 'mono' }, node.url) : h('span', { class: 'muted' }, '–'))));
      }
      clear(agentsBody);
      for (const ag of a.agents) {
        const active = ag.transfers.filter((t) => t.state === 'active');
        const done = ag.transfers.filter((t) => t.state === 'completed').length;
        agentsBody.append(h('tr', { dataset: { agent: ag.name } },
          td('Agent', h('span', { class: 'device-name' }, ag.name)),
          td('Site', ag.site),
          td('State', badge(ag.live ? 'live' : 'gone', ag.live ? 'live' : 'not answering')),
          td('Version', ag.version),
          td('Last heartbeat', seconds(ag.heartbeat_age_seconds)),
          td('TFTP', ag.tftp ? h('span', { class: 'mono' }, ag.tftp) : h('span', { class: 'muted' }, 'off')),
          td('Images', `${ag.images.length} checked`),
          td('Transfers', active.length
            ? active.map((t) => h('div', { class: 'small' }, `${t.client} ← ${t.file}: ${bytes(t.bytes)}${t.total ? ` of ${bytes(t.total)}` : ''}`))
            : h('span', { class: 'muted' }, `${done} finished, none running`)),
          td('Device jobs', !ag.drives
            ? h('span', { class: 'muted' }, 'serves files only')
            : ag.jobs.length
              ? ag.jobs.map((j) => h('div', { class: 'small' },
                h('a', { href: `#/rollouts/${encodeURIComponent(j.rollout)}`, class: 'mono' }, j.rollout), ` ${j.device}`))
              : h('span', { class: 'muted' }, 'drives its site; none held now'))));
      }
      if (a.agents.length === 0) agentsBody.append(h('tr', null, h('td', { colspan: 9, class: 'empty' }, 'No site agent: every site copies from the serve nodes (fleetup agent --site NAME …).')));
    } catch (err) {
      if (alive && err.status !== 401) errorSlot.replaceChildren(errorBox(err, 'Cannot load the nodes and agents'));
    }
  }
  load();
  const timer = setInterval(load, 3000);
  return () => { alive = false; clearInterval(timer); };
}
