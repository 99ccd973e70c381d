// Fleet: every device with its version and status, and how much of each site runs the target:
// by default each device's golden image (docs/golden.md), which this page also sets and unsets.
import { allDevices, get, request } from '../api.js';
import { h, svg, clear, fill, td, badge, relTime, errorBox, toast, announce } from '../ui.js';
import { vocabulary } from '../vocab.js';

const TARGET_KEY = 'fleetup.target';
// Non-target versions get distinct, calm hues; the target is always the "ok" green.
const PALETTE = ['#7c8db5', '#c08a3e', '#8e6bbf', '#3f9aa8', '#b8677d', '#6f8f4e', '#a07d63', '#5b6f8f'];
const STATUS_LABEL = {
  current: 'On target', outdated: 'Outdated', ahead: 'Ahead of target', unknown: 'Version unknown', upgrading: 'Upgrading', untargeted: 'No target',
};

export function render(main) {
  const state = { devices: [], images: [], rollouts: [], jobs: new Map(), compliance: new Map(), golden: [], target: localStorage.getItem(TARGET_KEY) || 'golden' };
  const f = { q: '', site: '', platform: '', status: '' };

  const search = h('input', { id: 'f-q', type: 'search', placeholder: 'Name, host, model, serial…', autocomplete: 'off' });
  const siteSel = h('select', { id: 'f-site' });
  const platSel = h('select', { id: 'f-platform' });
  const statusSel = h('select', { id: 'f-status' },
    h('option', { value: '' }, 'Any status'),
    Object.entries(STATUS_LABEL).map(([v, l]) => h('option', { value: v }, l)));
  const targetSel = h('select', { id: 'target' });
  const refreshBtn = h('button', { class: 'btn', type: 'button' }, 'Refresh');
  const summary = h('dl', { class: 'stats', 'aria-label': 'Fleet summary' });
  const chart = h('div', { id: 'version-chart' });
  const legend = h('ul', { class: 'legend', 'aria-label': 'Versions' });
  const count = h('p', { class: 'muted small', 'aria-live': 'polite', id: 'fleet-count' });
  const tbody = h('tbody');
  const errorSlot = h('div');
  const goldenBody = h('tbody');
  const gImage = h('select', { id: 'g-image', required: true });
  const gPlatform = h('select', { id: 'g-platform' }, h('option', { value: '' }, 'Any'), ['ios', 'iosxe', 'nxos'].map((p) => h('option', { value: p }, p)));
  const gModel = h('input', { id: 'g-model', type: 'text', placeholder: 'Any', autocomplete: 'off', pattern: '[A-Za-z0-9._/:\\-]{1,64}' });
  const gSite = h('input', { id: 'g-site', type: 'text', placeholder: 'Any', autocomplete: 'off', pattern: '[A-Za-z0-9._/:\\-]{1,64}' });
  const gRole = h('input', { id: 'g-role', type: 'text', placeholder: 'Any group or tag', autocomplete: 'off', pattern: '[A-Za-z0-9._/:\\-]{1,64}' });
  const goldenForm = h('form', { class: 'filters', id: 'golden-form', 'aria-label': 'Set a golden image' },
    h('div', { class: 'field grow' }, h('label', { for: 'g-image' }, 'Image'), gImage),
    h('div', { class: 'field' }, h('label', { for: 'g-platform' }, 'Platform'), gPlatform),
    h('div', { class: 'field' }, h('label', { for: 'g-model' }, 'Model'), gModel),
    h('div', { class: 'field' }, h('label', { for: 'g-site' }, 'Site'), gSite),
    h('div', { class: 'field' }, h('label', { for: 'g-role' }, 'Role'), gRole),
    h('div', { class: 'field' }, h('span', { 'aria-hidden': 'true' }, '\u00a0'), h('button', { class: 'btn btn-primary', type: 'submit', id: 'g-set' }, 'Set golden image')));

  main.append(
    h('div', { class: 'page-head' },
      h('div', null, h('h1', null, 'Fleet'), h('p', { class: 'muted' }, 'Devices in the inventory, their running version and how close each site is to the target image.')),
      h('div', { class: 'toolbar' }, h('a', { class: 'btn btn-primary', href: '#/new' }, 'New rollout'), refreshBtn)),
    errorSlot,
    summary,
    h('section', { class: 'card', 'aria-labelledby': 'chart-title' },
      h('div', { class: 'card-head' },
        h('h2', { id: 'chart-title' }, 'Version distribution per site'),
        h('div', { class: 'field' }, h('label', { for: 'target' }, 'Target'), targetSel)),
      chart, legend),
    h('section', { class: 'card', 'aria-labelledby': 'golden-title' },
      h('h2', { id: 'golden-title' }, 'Golden images'),
      h('p', { class: 'muted small' }, 'The image each platform, model, site or role should run. The most specific applies: model, then platform, then site, then role; an entry with none is global.'),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'responsive', id: 'golden' },
          h('thead', null, h('tr', null, ['Scope', 'Version', 'Image', ''].map((c) => h('th', { scope: 'col' }, c)))),
          goldenBody)),
      goldenForm),
    h('section', { class: 'card', 'aria-labelledby': 'devices-title' },
      h('h2', { id: 'devices-title' }, 'Devices'),
      h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter devices', onsubmit: (e) => e.preventDefault() },
        h('div', { class: 'field grow' }, h('label', { for: 'f-q' }, 'Search'), search),
        h('div', { class: 'field' }, h('label', { for: 'f-site' }, 'Site'), siteSel),
        h('div', { class: 'field' }, h('label', { for: 'f-platform' }, 'Platform'), platSel),
        h('div', { class: 'field' }, h('label', { for: 'f-status' }, 'Status'), statusSel)),
      count,
      h('div', { class: 'table-wrap' },
        h('table', { class: 'responsive', id: 'devices' },
          h('thead', null, h('tr', null, ['Device', 'Platform', 'Site', 'Model', 'Version', 'Last seen', 'Status'].map((c) => h('th', { scope: 'col' }, c)))),
          tbody))));

  const golden = () => state.target === 'golden';

  // The target versions: each device's golden image's (the service's compliance report), or
  // one image picked in the Target list.
  function targets() {
    const t = new Map();
    if (golden()) {
      let k = 0;
      for (const v of new Set([...state.compliance.values()].map((r) => r.golden_version).filter(Boolean))) t.set(`golden-${k++}`, v);
      return t;
    }
    const img = state.images.find((i) => i.file_name === state.target);
    if (img && img.version) t.set(img.platform || '*', img.version);
    return t;
  }

  const FROM_COMPLIANCE = { compliant: 'current', outdated: 'outdated', ahead: 'ahead', unknown: 'unknown' };

  function statusOf(d, t) {
    const job = state.jobs.get(d.name);
    if (job && job.state === 'running') return 'upgrading';
    if (golden()) {
      const row = state.compliance.get(d.name);
      if (!row || !row.golden_image) return 'untargeted';
      return FROM_COMPLIANCE[row.status] || 'unknown';
    }
    const want = t.get(d.platform) ?? t.get('*');
    if (!want) return 'untargeted';
    const have = d.facts && d.facts.version;
    if (!have) return 'unknown';
    return have === want ? 'current' : 'outdated';
  }

  function fillSelect(sel, label, values, current) {
    fill(sel, h('option', { value: '' }, label), values.map((v) => h('option', { value: v }, v)));
    sel.value = values.includes(current) ? current : '';
  }

  function drawTargetSelect() {
    fill(targetSel,
      h('option', { value: 'golden' }, 'Golden image of each device'),
      state.images.map((i) => h('option', { value: i.file_name }, `${i.version || '?'} · ${i.file_name}`)));
    targetSel.value = [...targetSel.options].some((o) => o.value === state.target) ? state.target : 'golden';
    state.target = targetSel.value;
  }

  function drawGolden() {
    clear(goldenBody);
    for (const g of state.golden) {
      const unset = h('button', { class: 'btn btn-quiet btn-danger', type: 'button', 'aria-label': `Unset the golden image of ${g.scope}` }, 'Unset');
      unset.addEventListener('click', async () => {
        const q = new URLSearchParams();
        for (const k of ['platform', 'model', 'site', 'role']) if (g[k]) q.set(k, g[k]);
        try {
          await request(`/golden${q.size ? `?${q}` : ''}`, { method: 'DELETE' });
          announce(`Golden image of ${g.scope} unset`);
          load();
        } catch (err) { if (err.status !== 401) toast(err.message, { error: true }); }
      });
      goldenBody.append(h('tr', { dataset: { scope: g.scope } },
        td('Scope', g.scope),
        td('Version', g.version || h('span', { class: 'muted' }, 'unknown')),
        td('Image', h('span', { class: 'mono' }, g.image)),
        td('', unset)));
    }
    if (state.golden.length === 0) goldenBody.append(h('tr', null, h('td', { colspan: 4, class: 'empty' }, 'No golden image yet: every device shows "No target". Set one below, or with fleetup golden set.')));
    const current = gImage.value;
    fill(gImage, state.images.map((i) => h('option', { value: i.file_name }, `${i.version || '?'} · ${i.file_name}`)));
    if (state.images.some((i) => i.file_name === current)) gImage.value = current;
  }

  goldenForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!gImage.value) { toast('Add an image first (Images page)', { error: true }); return; }
    const body = { image: gImage.value };
    for (const [k, el] of [['platform', gPlatform], ['model', gModel], ['site', gSite], ['role', gRole]]) if (el.value.trim()) body[k] = el.value.trim();
    try {
      const res = await request('/golden', { method: 'PUT', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
      const g = await res.json();
      announce(`Golden image of ${g.scope}: ${g.image}`);
      toast(`Golden image of ${g.scope}: ${g.image}`);
      load();
    } catch (err) { if (err.status !== 401) toast(err.message, { error: true }); }
  });

  function drawSummary(t) {
    const counts = { current: 0, outdated: 0, ahead: 0, unknown: 0, upgrading: 0 };
    for (const d of state.devices) { const s = statusOf(d, t); if (s in counts) counts[s] += 1; }
    const stat = (label, value, id) => h('div', { class: 'stat' }, h('dt', null, label), h('dd', { id }, value));
    fill(summary,
      stat('Devices', state.devices.length, 'stat-devices'),
      stat('On target', counts.current, 'stat-current'),
      stat('Outdated', counts.outdated, 'stat-outdated'),
      stat('Ahead', counts.ahead, 'stat-ahead'),
      stat('Version unknown', counts.unknown, 'stat-unknown'),
      stat('Upgrading now', counts.upgrading, 'stat-upgrading'));
  }

  function drawChart(t) {
    const targetVersions = new Set(t.values());
    const versions = [...new Set(state.devices.map((d) => (d.facts && d.facts.version) || ''))]
      .sort((a, b) => (targetVersions.has(b) - targetVersions.has(a)) || (a === '') - (b === '') || a.localeCompare(b));
    const color = new Map();
    let k = 0;
    for (const v of versions) {
      if (targetVersions.has(v)) color.set(v, 'var(--ok)');
      else if (v === '') color.set(v, 'var(--chart-other)');
      else { color.set(v, PALETTE[k % PALETTE.length]); k += 1; }
    }
    const sites = new Map();
    for (const d of state.devices) {
      const s = d.site || '(no site)';
      if (!sites.has(s)) sites.set(s, []);
      sites.get(s).push(d);
    }
    clear(chart);
    clear(legend);
    if (state.devices.length === 0) {
      chart.append(h('p', { class: 'empty' }, 'No devices yet. Import an inventory with ', h('code', null, 'fleetup inventory import FILE.yml'), '.'));
      return;
    }
    for (const [site, devs] of [...sites.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      const per = new Map();
      for (const d of devs) { const v = (d.facts && d.facts.version) || ''; per.set(v, (per.get(v) || 0) + 1); }
      const targeted = devs.filter((d) => statusOf(d, t) !== 'untargeted');
      const onTarget = devs.filter((d) => statusOf(d, t) === 'current').length;
      const pct = targeted.length ? Math.round((100 * onTarget) / targeted.length) : null;
      const parts = versions.filter((v) => per.has(v)).map((v) => `${v || 'unknown version'}: ${per.get(v)}`);
      const desc = `${site}: ${onTarget} of ${targeted.length} targeted devices on target${pct === null ? '' : ` (${pct}%)`}. ${parts.join(', ')}.`;
      const bar = svg('svg', { viewBox: '0 0 1000 20', preserveAspectRatio: 'none', role: 'img', 'aria-label': desc });
      let x = 0;
      for (const v of versions) {
        const n = per.get(v);
        if (!n) continue;
        const w = (1000 * n) / devs.length;
        bar.append(svg('rect', { x, y: 0, width: w, height: 20, fill: color.get(v), stroke: 'var(--surface)', 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' },
          svg('title', null, `${v || 'unknown version'}: ${n} device${n === 1 ? '' : 's'}`)));
        x += w;
      }
      chart.append(h('div', { class: 'chart-row', dataset: { site } },
        h('span', { class: 'site', title: site }, site),
        bar,
        h('span', { class: 'pct' }, pct === null ? `${devs.length} devices` : h('span', null, h('strong', null, `${pct}%`), ` · ${onTarget}/${targeted.length}`))));
    }
    for (const v of versions) {
      legend.append(h('li', null, h('span', { class: 'swatch', style: `background:${color.get(v)}` }),
        v || 'unknown', targetVersions.has(v) ? ' (target)' : ''));
    }
  }

  function drawTable(t) {
    const q = f.q.toLowerCase();
    const rows = state.devices.filter((d) => {
      if (f.site && (d.site || '') !== f.site) return false;
      if (f.platform && d.platform !== f.platform) return false;
      if (f.status && statusOf(d, t) !== f.status) return false;
      if (!q) return true;
      const hay = [d.name, d.host, d.model, d.facts && d.facts.serial, d.facts && d.facts.version, ...(d.groups || []), ...(d.tags || [])];
      return hay.some((x) => x && String(x).toLowerCase().includes(q));
    });
    clear(tbody);
    for (const d of rows) {
      const s = statusOf(d, t);
      const job = state.jobs.get(d.name);
      tbody.append(h('tr', { dataset: { device: d.name } },
        td('Device', h('a', { class: 'device-name', href: `#/devices/${encodeURIComponent(d.name)}` }, d.name), h('div', { class: 'muted small mono' }, d.port && d.port !== 22 ? `${d.host}:${d.port}` : d.host)),
        td('Platform', d.platform),
        td('Site', d.site || h('span', { class: 'muted' }, '–')),
        td('Model', (d.facts && d.facts.model) || d.model || h('span', { class: 'muted' }, '–')),
        td('Version', (d.facts && d.facts.version) || h('span', { class: 'muted' }, 'unknown')),
        td('Last seen', relTime(d.facts && d.facts.last_seen)),
        td('Status', badge(s === 'untargeted' ? 'unknown' : s, STATUS_LABEL[s]),
          golden() && state.compliance.get(d.name) && s !== 'current' && s !== 'upgrading' ? h('div', { class: 'muted small' }, state.compliance.get(d.name).reason) : null,
          job && job.state === 'running' ? h('div', { class: 'muted small' }, h('a', { href: `#/rollouts/${encodeURIComponent(job.rollout)}` }, job.step || 'starting')) : null)));
    }
    if (rows.length === 0) tbody.append(h('tr', null, h('td', { colspan: 7, class: 'empty' }, state.devices.length ? 'No device matches these filters.' : 'The inventory is empty.')));
    count.textContent = rows.length === state.devices.length
      ? `${rows.length} device${rows.length === 1 ? '' : 's'}`
      : `${rows.length} of ${state.devices.length} devices match`;
  }

  function draw() {
    const t = targets();
    drawSummary(t);
    drawChart(t);
    drawTable(t);
  }

  let alive = true;
  async function load() {
    try {
      const [devices, imgs, rolls, V, report, gold] = await Promise.all([
        allDevices(), get('/images'), get('/rollouts'), vocabulary(), get('/compliance'), get('/golden')]);
      if (!alive) return;
      state.compliance = new Map(report.devices.map((r) => [r.device, r]));
      state.golden = gold.golden;
      state.devices = devices.sort((a, b) => a.name.localeCompare(b.name));
      state.images = imgs.images;
      state.rollouts = rolls.rollouts;
      // Which devices are being upgraded right now, and at which step.
      const jobs = new Map();
      const active = state.rollouts.filter((r) => V.active.has(r.state)).slice(0, 5);
      const details = await Promise.all(active.map((r) => get(`/rollouts/${encodeURIComponent(r.id)}`).catch(() => null)));
      for (const det of details.filter(Boolean)) {
        for (const w of det.waves) for (const j of w.devices) if (j.state === 'running') jobs.set(j.device, { ...j, rollout: det.id });
      }
      if (!alive) return;
      state.jobs = jobs;
      fillSelect(siteSel, 'All sites', [...new Set(devices.map((d) => d.site || ''))].filter(Boolean).sort(), f.site);
      fillSelect(platSel, 'All platforms', [...new Set(devices.map((d) => d.platform))].sort(), f.platform);
      drawTargetSelect();
      drawGolden();
      errorSlot.replaceChildren();
      draw();
    } catch (err) {
      if (alive && err.status !== 401) errorSlot.replaceChildren(errorBox(err, 'Cannot load the fleet'));
    }
  }

  search.addEventListener('input', () => { f.q = search.value.trim(); drawTable(targets()); });
  siteSel.addEventListener('change', () => { f.site = siteSel.value; drawTable(targets()); });
  platSel.addEventListener('change', () => { f.platform = platSel.value; drawTable(targets()); });
  statusSel.addEventListener('change', () => { f.status = statusSel.value; drawTable(targets()); });
  targetSel.addEventListener('change', () => {
    state.target = targetSel.value;
    localStorage.setItem(TARGET_KEY, state.target);
    draw();
  });
  refreshBtn.addEventListener('click', load);

  load();
  const timer = setInterval(() => { if (!document.hidden) load(); }, 15000);
  return () => { alive = false; clearInterval(timer); };
}
