// Start a rollout from a playbook: paste or load YAML, preview the plan (dry run), start.
// Validation errors come back with line and column; they are shown next to the editor and the
// line is marked.
import { get, post, ApiError, allDevices } from '../api.js';
import { h, clear, fill, announce, confirmDialog, toast } from '../ui.js';

const DRAFT_KEY = 'fleetup.playbook';
const LINE_PX = 20;
const PAD_PX = 8;

export function render(main, { go }) {
  const textarea = h('textarea', {
    id: 'playbook', name: 'playbook', wrap: 'off', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off',
    'aria-describedby': 'playbook-hint playbook-error',
  });
  textarea.value = sessionStorage.getItem(DRAFT_KEY) || '';
  const gutter = h('div', { class: 'gutter', 'aria-hidden': 'true' });
  const mark = h('div', { class: 'line-mark', hidden: true });
  const editor = h('div', { class: 'editor' }, gutter, h('div', { class: 'editor-body' }, mark, textarea));
  const errorBoxEl = h('div', { id: 'playbook-error' });
  const fileInput = h('input', { id: 'playbook-file', type: 'file', accept: '.yml,.yaml,.json,text/yaml,application/json' });
  const exampleBtn = h('button', { type: 'button', class: 'btn' }, 'Insert an example');
  const previewBtn = h('button', { type: 'button', class: 'btn', id: 'preview' }, 'Preview plan');
  const startBtn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'start' }, 'Start rollout…');
  const planBox = h('div', { id: 'plan' },
    h('p', { class: 'muted' }, 'Preview the plan to see the waves, the devices in each and the devices that will not be touched, before anything starts.'));
  let errorLine = null;

  const form = h('form', { 'aria-labelledby': 'editor-title', novalidate: true },
    h('div', { class: 'card-head' },
      h('h2', { id: 'editor-title' }, h('label', { for: 'playbook' }, 'Playbook (YAML)')),
      h('div', { class: 'toolbar' },
        h('label', { for: 'playbook-file', class: 'visually-hidden' }, 'Load a playbook file'),
        fileInput, exampleBtn)),
    h('p', { id: 'playbook-hint', class: 'muted small' },
      'Targets, image per platform, transfer, strategy (canary, waves, concurrency, max_failures) and an optional schedule. ',
      'Tab indents; press Escape, then Tab, to leave the editor.'),
    errorBoxEl,
    editor,
    h('div', { class: 'toolbar', style: 'margin-top:.75rem' }, previewBtn, startBtn));

  main.append(
    h('div', { class: 'page-head' },
      h('div', null, h('h1', null, 'New rollout'), h('p', { class: 'muted' }, 'Paste or load a playbook, preview what it will do, then start it.'))),
    h('div', { class: 'grid-2' },
      h('section', { class: 'card' }, form),
      h('section', { class: 'card', 'aria-labelledby': 'plan-title' }, h('h2', { id: 'plan-title' }, 'Plan preview'), planBox)));

  function lineCount() { return textarea.value.split('\n').length; }

  function drawGutter() {
    const n = Math.max(lineCount(), 1);
    if (gutter.childElementCount !== n || gutter.dataset.bad !== String(errorLine)) {
      clear(gutter);
      for (let i = 1; i <= n; i += 1) {
        gutter.append(h('div', { class: i === errorLine ? 'bad-line' : null }, String(i)));
      }
      gutter.dataset.bad = String(errorLine);
    }
    gutter.scrollTop = textarea.scrollTop;
    if (errorLine) {
      mark.hidden = false;
      mark.style.top = `${PAD_PX + (errorLine - 1) * LINE_PX - textarea.scrollTop}px`;
    } else {
      mark.hidden = true;
    }
  }

  function clearError() {
    errorLine = null;
    errorBoxEl.replaceChildren();
    editor.classList.remove('invalid');
    textarea.removeAttribute('aria-invalid');
    drawGutter();
  }

  function selectLine(line, column) {
    const lines = textarea.value.split('\n');
    const l = Math.min(Math.max(line, 1), lines.length);
    let start = 0;
    for (let i = 0; i < l - 1; i += 1) start += lines[i].length + 1;
    const caret = start + Math.min(Math.max((column || 1) - 1, 0), lines[l - 1].length);
    textarea.focus();
    textarea.setSelectionRange(caret, caret);
    // Keep the line in view, a few lines from the top.
    textarea.scrollTop = Math.max(0, (l - 4) * LINE_PX);
    drawGutter();
  }

  function showError(err, what) {
    editor.classList.add('invalid');
    textarea.setAttribute('aria-invalid', 'true');
    errorLine = err.line || null;
    const where = err.line ? `line ${err.line}${err.column ? `, column ${err.column}` : ''}` : null;
    // The message repeats the position the heading already gives.
    const message = err.message.replace(/^(error:\s*)?line \d+,? column \d+:\s*/i, '');
    errorBoxEl.replaceChildren(h('div', { class: 'alert alert-error', role: 'alert', id: 'playbook-error-text', dataset: { line: err.line ?? '', column: err.column ?? '' } },
      h('strong', null, where ? `${what}: error at ${where}` : `${what}: the playbook was refused`),
      h('span', null, message),
      err.line ? h('div', { style: 'margin-top:.4rem' },
        h('button', { type: 'button', class: 'btn', onclick: () => selectLine(err.line, err.column) }, `Go to line ${err.line}`)) : null));
    drawGutter();
    if (err.line) textarea.scrollTop = Math.max(0, (err.line - 4) * LINE_PX);
    drawGutter();
  }

  function showPlan(dry) {
    const plan = dry.plan;
    const waves = plan.waves.filter((w) => w.devices.length);
    fill(planBox,
      h('p', null, h('strong', null, dry.name), ': ', `${plan.total} device${plan.total === 1 ? '' : 's'} to upgrade in ${waves.length} wave${waves.length === 1 ? '' : 's'}`,
        plan.skipped.length ? `, ${plan.skipped.length} not touched` : '', '.'),
      h('p', { class: 'small muted' }, `The rollout halts at ${plan.halt_after_failures} failed device${plan.halt_after_failures === 1 ? '' : 's'}.`),
      (dry.windows || []).length ? h('div', { class: 'plan-windows', id: 'plan-windows' },
        h('p', { class: 'small' }, 'Images are copied and verified at once; the boot change, save and reload wait for a maintenance window:'),
        h('ul', { class: 'small' }, dry.windows.map((w) => h('li', null, h('code', null, w.window), ': ',
          w.open ? 'open now' : (w.opens ? `opens ${w.opens}` : 'does not open in the next two weeks'))))) : null,
      waves.map((w) => h('div', { class: 'plan-wave', dataset: { wave: w.index } },
        h('h3', null, `${w.name}${w.share ? ` (${w.share})` : ''}: ${w.devices.length} device${w.devices.length === 1 ? '' : 's'}`),
        h('ul', null, w.devices.map((d) => h('li', null, h('strong', null, d.device), ' ',
          h('span', { class: 'muted small' }, `${d.site ? `${d.site} · ` : ''}${d.current_version || '?'} → ${d.target_version || d.image}`),
          d.downgrade ? h('span', { class: 'small' }, ' downgrade: refused unless options.allow_downgrade') : null))))),
      plan.skipped.length ? h('div', { class: 'plan-wave' },
        h('h3', null, `Not touched (${plan.skipped.length})`),
        h('ul', null, plan.skipped.map((s) => h('li', null, h('strong', null, s.device), ': ', s.reason)))) : null);
  }

  async function dryRun(what) {
    clearError();
    const text = textarea.value;
    if (!text.trim()) {
      showError(new ApiError(422, { error: { message: 'the playbook is empty: paste one, load a file or insert the example' } }), what);
      textarea.focus();
      return null;
    }
    try {
      const dry = await post('/rollouts?dry_run=true', text, 'application/yaml');
      showPlan(dry);
      return dry;
    } catch (err) {
      if (err.status === 401) return null;
      if (err.status === 0) toast(err.message, { error: true });
      else showError(err, what);
      fill(planBox, h('p', { class: 'muted' }, 'No plan: fix the playbook first.'));
      announce(`${what} failed: ${err.line ? `line ${err.line}: ` : ''}${err.message}`);
      return null;
    }
  }

  previewBtn.addEventListener('click', async () => {
    previewBtn.disabled = true;
    try {
      const dry = await dryRun('Preview');
      if (dry) announce(`Plan: ${dry.plan.total} devices to upgrade.`);
    } finally { previewBtn.disabled = false; }
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    startBtn.disabled = true;
    try {
      const dry = await dryRun('Cannot start');
      if (!dry) return;
      const waves = dry.plan.waves.filter((w) => w.devices.length).length;
      const ok = await confirmDialog({
        title: `Start rollout “${dry.name}”?`,
        body: `${dry.plan.total} device${dry.plan.total === 1 ? '' : 's'} will be upgraded in ${waves} wave${waves === 1 ? '' : 's'}. Devices reload, inside the maintenance windows if the playbook sets any.`,
        ok: 'Start rollout',
      });
      if (!ok) { startBtn.focus(); return; }
      const r = await post('/rollouts', textarea.value, 'application/yaml');
      sessionStorage.removeItem(DRAFT_KEY);
      toast(`Rollout ${r.name} started.`);
      go(`#/rollouts/${encodeURIComponent(r.id)}`);
    } catch (err) {
      if (err.status !== 401) showError(err, 'Cannot start');
    } finally {
      startBtn.disabled = false;
    }
  });

  fileInput.addEventListener('change', async () => {
    const file = fileInput.files && fileInput.files[0];
    if (!file) return;
    if (file.size > 4 * 1024 * 1024) {
      toast(`${file.name} is larger than 4 MB: that is not a playbook.`, { error: true });
      return;
    }
    textarea.value = await file.text();
    sessionStorage.setItem(DRAFT_KEY, textarea.value);
    clearError();
    announce(`Loaded ${file.name}`);
    textarea.focus();
  });

  exampleBtn.addEventListener('click', async () => {
    let image = 'c2960x-universalk9-mz.152-7.E8.bin';
    let platform = 'ios';
    let groups = ['lab'];
    try {
      const [imgs, devices] = await Promise.all([get('/images'), allDevices()]);
      const newest = [...imgs.images].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)))[0];
      if (newest) { image = newest.file_name; platform = newest.platform || platform; }
      const g = [...new Set(devices.filter((d) => d.platform === platform).flatMap((d) => d.groups || []))];
      if (g.length) groups = [g[0]];
    } catch { /* the static example is still useful */ }
    textarea.value = [
      `name: ${groups[0]}-to-${image.replace(/\.bin$/, '')}`,
      'targets:',
      `  groups: [${groups.join(', ')}]`,
      'image:',
      `  ${platform}: ${image}`,
      'transfer:',
      '  protocol: tftp',
      `  server: ${location.hostname === 'localhost' ? '127.0.0.1' : location.hostname}`,
      'strategy:',
      '  canary: 1',
      '  waves: ["50%", "100%"]',
      '  concurrency: 5',
      '  max_failures: 1',
      '',
    ].join('\n');
    sessionStorage.setItem(DRAFT_KEY, textarea.value);
    clearError();
    textarea.focus();
  });

  textarea.addEventListener('input', () => {
    sessionStorage.setItem(DRAFT_KEY, textarea.value);
    // The marked line no longer means much once the text around it changes.
    if (errorLine) { editor.classList.remove('invalid'); errorLine = null; }
    drawGutter();
  });
  textarea.addEventListener('scroll', drawGutter);
  // Tab indents (two spaces) instead of leaving the editor; Escape then Tab leaves it.
  let escaped = false;
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { escaped = true; return; }
    if (e.key === 'Tab' && !e.shiftKey && !escaped && !e.ctrlKey && !e.altKey && !e.metaKey) {
      e.preventDefault();
      textarea.setRangeText('  ', textarea.selectionStart, textarea.selectionEnd, 'end');
      textarea.dispatchEvent(new Event('input'));
    }
    escaped = false;
  });
  drawGutter();
}
