// One device: its facts and their history, its image transfer, the rollouts that included it,
// and for one rollout its steps with the commands fleetup sent and what the device printed.
import { get, session } from '../api.js';
import {
  h, clear, fill, td, badge, bytes, rate, duration, dateTime, timeOnly, relTime, errorBox,
} from '../ui.js';

const FINISHED_ROLLOUT = new Set(['completed', 'completed_with_failures', 'failed', 'aborted']);

export function render(main, { params, query }) {
  const name = params[0];
  const enc = encodeURIComponent(name);
  let selected = query.get('rollout') || null;
  let history = null;
  let job = null;
  let alive = true;
  // Which steps the operator opened or closed, so a refresh keeps them as they were.
  const opened = new Map();

  const title = h('h1', { id: 'device-title' }, name);
  const meta = h('ul', { class: 'meta' });
  const errorSlot = h('div');
  const factsNow = h('dl', { class: 'facts', id: 'device-facts' });
  const factsBody = h('tbody');
  const transferBox = h('div', { id: 'device-transfer' });
  const rolloutsBody = h('tbody');
  const stepsTitle = h('h2', { id: 'steps-title' }, 'Steps');
  const stepsBox = h('div', { id: 'device-steps' });
  // The running configuration before and after the selected rollout: read only with the
  // token (configurations hold secrets), never through --read-open.
  const configBox = h('div', { id: 'device-config-diff' });

  main.append(
    h('p', { class: 'small' }, h('a', { href: '#/fleet' }, '← Fleet')),
    h('div', { class: 'page-head' }, h('div', null, title, meta)),
    errorSlot,
    h('div', { class: 'grid-2' },
      h('section', { class: 'card', 'aria-labelledby': 'facts-title' },
        h('h2', { id: 'facts-title' }, 'Facts'),
        factsNow,
        h('details', { class: 'facts-history' },
          h('summary', null, 'History of the facts'),
          h('div', { class: 'table-wrap' },
            h('table', { class: 'responsive', id: 'facts-history' },
              h('thead', null, h('tr', null, ['Read', 'Version', 'Image', 'Model', 'Serial', 'Uptime'].map((c) => h('th', { scope: 'col' }, c)))),
              factsBody)))),
      h('section', { class: 'card', 'aria-labelledby': 'transfer-title' },
        h('h2', { id: 'transfer-title' }, 'Image transfer'),
        transferBox)),
    h('section', { class: 'card', 'aria-labelledby': 'device-rollouts-title' },
      h('h2', { id: 'device-rollouts-title' }, 'Rollouts'),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'responsive', id: 'device-rollouts' },
          h('thead', null, h('tr', null, ['Rollout', 'Result', 'Version', 'Started', 'Took', 'Steps'].map((c) => h('th', { scope: 'col' }, c)))),
          rolloutsBody))),
    h('section', { class: 'card', 'aria-labelledby': 'steps-title' }, stepsTitle, stepsBox),
    h('section', { class: 'card', 'aria-labelledby': 'config-title' },
      h('h2', { id: 'config-title' }, 'Configuration changes'), configBox));

  // One <pre>, a line per span: text nodes only, so nothing in a configuration is markup.
  function drawConfigDiff(d) {
    if (!d) {
      fill(configBox, h('p', { class: 'muted' }, 'No running configuration kept before and after in this rollout.'));
      return;
    }
    if (d.too_different) {
      fill(configBox, h('p', null, 'The configurations differ in too many lines for a diff: compare the backups with `fleetup device configs`.'));
      return;
    }
    if (d.added + d.removed === 0) {
      fill(configBox, h('p', { class: 'muted' }, 'The running configuration is the same before and after (volatile lines aside).'));
      return;
    }
    const pre = h('pre', { class: 'config-diff', 'aria-label': `Configuration diff of ${name}` });
    d.diff.split('\n').filter((l) => l !== '').forEach((l) => {
      const cls = l.startsWith('+') ? 'diff-add' : l.startsWith('-') ? 'diff-del' : l.startsWith('@@') ? 'diff-hunk muted' : 'diff-same';
      pre.append(h('span', { class: cls }, l), '\n');
    });
    fill(configBox,
      h('p', { class: 'small' }, `${d.added} line${d.added === 1 ? '' : 's'} added, ${d.removed} removed`),
      pre);
  }

  async function loadConfigDiff(want) {
    if (!session.token()) {
      fill(configBox, h('p', { class: 'muted' }, 'Sign in with the API token to see configuration changes.'));
      return;
    }
    try {
      const d = await get(`/devices/${enc}/configs/diff/${encodeURIComponent(want)}`);
      if (alive && want === selected) drawConfigDiff(d);
    } catch (err) {
      if (!alive || want !== selected) return;
      if (err.status === 404) drawConfigDiff(null);
      else if (err.status !== 401) fill(configBox, errorBox(err, 'Cannot load the configuration changes'));
    }
  }

  function drawDevice(device) {
    document.title = `${name} · fleetup`;
    if (!device) {
      fill(meta, h('li', null, 'No longer in the inventory'));
      fill(factsNow, h('p', { class: 'muted' }, 'No facts: the device is not in the inventory.'));
      return;
    }
    fill(meta,
      h('li', null, device.platform),
      h('li', null, h('span', { class: 'mono' }, device.port && device.port !== 22 ? `${device.host}:${device.port}` : device.host)),
      device.site ? h('li', null, 'Site ', device.site) : null,
      device.groups && device.groups.length ? h('li', null, 'Groups ', device.groups.join(', ')) : null);
    const f = device.facts || {};
    const row = (label, value, mono) => [h('dt', null, label), h('dd', { class: mono ? 'mono' : null }, value || h('span', { class: 'muted' }, '–'))];
    fill(factsNow,
      row('Version', f.version),
      row('Image', f.image, true),
      row('Model', f.model || device.model),
      row('Serial', f.serial, true),
      row('Uptime', f.uptime),
      h('dt', null, 'Last seen'), h('dd', null, relTime(f.last_seen)));
  }

  function drawFacts() {
    clear(factsBody);
    for (const f of history.facts) {
      factsBody.append(h('tr', null,
        td('Read', h('time', { datetime: f.at, title: dateTime(f.at) }, dateTime(f.at))),
        td('Version', f.version || '–'),
        td('Image', h('span', { class: 'mono small' }, f.image || '–')),
        td('Model', f.model || '–'),
        td('Serial', h('span', { class: 'mono small' }, f.serial || '–')),
        td('Uptime', f.uptime || '–')));
    }
    if (!history.facts.length) factsBody.append(h('tr', null, h('td', { colspan: 6, class: 'empty' }, 'No facts read yet.')));
  }

  function took(r) {
    if (!r.started_at) return null;
    const end = r.finished_at ? Date.parse(r.finished_at) : (r.state === 'running' ? Date.now() : null);
    return end === null ? null : (end - Date.parse(r.started_at)) / 1000;
  }

  function drawRollouts() {
    clear(rolloutsBody);
    for (const r of history.rollouts) {
      const isSel = r.rollout_id === selected;
      const to = r.new_version || r.target_version;
      const versions = r.old_version ? `${r.old_version} → ${to || '?'}` : `→ ${to || '?'}`;
      const show = h('button', {
        type: 'button', class: `btn${isSel ? ' btn-primary' : ''}`, 'aria-pressed': isSel ? 'true' : 'false',
        onclick: () => select(r.rollout_id),
      }, isSel ? 'Shown' : 'Show steps');
      rolloutsBody.append(h('tr', { dataset: { rollout: r.rollout_id, state: r.state }, class: isSel ? 'selected' : null },
        td('Rollout', h('a', { href: `#/rollouts/${encodeURIComponent(r.rollout_id)}` }, r.rollout_name),
          h('div', { class: 'muted small' }, h('code', null, r.rollout_id), ' ', badge(r.rollout_state))),
        td('Result', badge(r.state), r.attempts > 1 ? h('div', { class: 'muted small' }, `${r.attempts} attempts`) : null,
          r.error ? h('div', { class: 'err', role: 'note' }, r.error) : null),
        td('Version', h('span', { class: 'mono small nowrap' }, versions)),
        td('Started', r.started_at ? h('time', { datetime: r.started_at, title: dateTime(r.started_at) }, dateTime(r.started_at)) : h('span', { class: 'muted' }, 'not yet')),
        td('Took', duration(took(r))),
        td('Steps', show)));
    }
    if (!history.rollouts.length) rolloutsBody.append(h('tr', null, h('td', { colspan: 6, class: 'empty' }, 'No rollout has included this device.')));
  }

  function drawTransfer(t) {
    if (!t) {
      fill(transferBox, h('p', { class: 'muted' }, 'No recent image transfer to this device.'));
      return;
    }
    const total = t.total || 0;
    const pct = total ? Math.min(100, (100 * t.bytes) / total) : 0;
    const active = t.state === 'active';
    const eta = active && t.rate_bps && total ? (total - t.bytes) / t.rate_bps : null;
    const text = [
      `${bytes(t.bytes)}${total ? ` of ${bytes(total)} (${Math.floor(pct)}%)` : ''}`,
      active ? rate(t.rate_bps) : null,
      eta !== null ? `ETA ${duration(eta)}` : null,
      t.state,
    ].filter(Boolean).join(' · ');
    const cls = t.state === 'completed' ? 'done' : (t.state === 'failed' ? 'failed' : '');
    fill(transferBox,
      h('p', null, h('span', { class: 'mono small' }, t.file), ' over ', (t.protocol || '').toUpperCase(),
        t.job ? [' for rollout ', h('a', { href: `#/rollouts/${encodeURIComponent(t.job.rollout)}` }, h('code', null, t.job.rollout))] : null),
      h('div', { class: `xfer ${cls}` },
        h('div', {
          class: 'meter', role: 'progressbar', 'aria-label': `Image transfer to ${name}`,
          'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.floor(pct), 'aria-valuetext': text,
        }, h('span', { style: `width:${pct}%` })),
        h('div', { class: 'xfer-text' }, text),
        t.error ? h('div', { class: 'err' }, t.error) : null));
  }

  function line(l) {
    if (l.kind === 'answer') {
      const typed = l.command === '' ? '⏎ (Return)' : l.command;
      return h('li', { class: 'tr-answer' }, h('span', { class: 'muted' }, '↳ answered '), h('q', null, l.output), ' with ', h('kbd', null, typed));
    }
    if (l.kind === 'note') return h('li', { class: 'tr-note muted' }, l.command, ' ', l.output);
    return h('li', { class: 'tr-command' },
      h('div', { class: 'tr-head' }, h('code', { class: 'tr-cmd' }, l.command), h('time', { class: 'muted small', datetime: l.at, title: dateTime(l.at) }, timeOnly(l.at))),
      l.output ? h('pre', { class: 'tr-out' }, l.output) : h('div', { class: 'muted small' }, '(no output)'));
  }

  function drawSteps() {
    if (!job) {
      stepsTitle.textContent = 'Steps';
      fill(stepsBox, h('p', { class: 'muted' }, history && history.rollouts.length ? 'Pick a rollout above.' : 'Nothing to show yet.'));
      return;
    }
    stepsTitle.textContent = `Steps in ${job.rollout_name}`;
    const running = job.state === 'running';
    const list = h('ol', { class: 'steps', 'aria-label': `Steps of ${name} in ${job.rollout_name}` });
    job.steps.forEach((s, i) => {
      const result = s.result || (running && !s.finished_at ? 'running' : 'unfinished');
      const secs = s.seconds ?? (running && !s.finished_at ? (Date.now() - Date.parse(s.started_at)) / 1000 : null);
      const commands = s.transcript.filter((l) => l.kind === 'command').length;
      const key = `${s.step}#${i}`;
      const open = opened.has(key) ? opened.get(key) : result === 'failed';
      const details = h('details', { class: `step-block ${result}`, dataset: { step: s.step }, open },
        h('summary', null,
          h('span', { class: `tl-step ${result}` }, s.step),
          ` ${result} · ${duration(secs)} · `,
          h('span', { class: 'muted' }, `${commands} command${commands === 1 ? '' : 's'}`)),
        s.transcript.length
          ? h('ol', { class: 'transcript' }, s.transcript.map(line))
          : h('p', { class: 'muted small' }, 'No command sent in this step.'));
      details.addEventListener('toggle', () => opened.set(key, details.open));
      list.append(h('li', null, details));
    });
    fill(stepsBox,
      job.error ? h('div', { class: 'alert alert-error', role: 'note' }, h('strong', null, 'Error'), job.error) : null,
      job.steps.length ? list : h('p', { class: 'muted' }, 'No step started yet.'),
      job.other_lines && job.other_lines.length
        ? h('details', { class: 'step-block' }, h('summary', null, 'Outside the steps'), h('ol', { class: 'transcript' }, job.other_lines.map(line)))
        : null,
      h('p', { class: 'small muted' }, 'Passwords, the enable secret and the one-time FTP password are shown as ***.'));
  }

  function select(id) {
    selected = id;
    opened.clear();
    // Keep the choice in the address, so reload and back return to it.
    window.history.replaceState(null, '', `#/devices/${enc}?rollout=${encodeURIComponent(id)}`);
    drawRollouts();
    loadJob();
  }

  async function loadJob() {
    if (!selected) { job = null; drawSteps(); return; }
    const want = selected;
    try {
      const j = await get(`/devices/${enc}/rollouts/${encodeURIComponent(want)}`);
      if (!alive || want !== selected) return;
      job = j;
      drawSteps();
      await loadConfigDiff(want);
    } catch (err) {
      if (alive && err.status !== 401) fill(stepsBox, errorBox(err, 'Cannot load the steps'));
    }
  }

  let timer = null;
  async function load() {
    clearTimeout(timer);
    try {
      const [device, hist, transfers] = await Promise.all([
        get(`/devices/${enc}`).catch((err) => { if (err.status === 404) return null; throw err; }),
        get(`/devices/${enc}/history`),
        get('/transfers'),
      ]);
      if (!alive) return;
      history = hist;
      errorSlot.replaceChildren();
      if (!selected && history.rollouts.length) selected = history.rollouts[0].rollout_id;
      drawDevice(device);
      drawFacts();
      // The device's transfer is the one its job claimed, never one found by address.
      drawTransfer((transfers.transfers || []).find((t) => t.job && t.job.device === name));
      drawRollouts();
      await loadJob();
    } catch (err) {
      if (alive && err.status !== 401) errorSlot.replaceChildren(errorBox(err, err.status === 404 ? 'No such device' : 'Cannot load the device'));
    } finally {
      const busy = history && history.rollouts.some((r) => r.state === 'running' || (!FINISHED_ROLLOUT.has(r.rollout_state) && r.state === 'pending'));
      if (alive && busy) timer = setTimeout(load, 2000);
    }
  }

  load();
  return () => {
    alive = false;
    clearTimeout(timer);
  };
}
