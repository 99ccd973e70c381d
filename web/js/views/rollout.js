// One rollout, live: waves, a row per device (step, transfer, timeline, error), the actions,
// and an activity log. Server-sent events say when something changed; the detail is then
// re-fetched (throttled). Transfer byte counts change without events, so while a copy runs the
// detail is also polled every second.
import { get, post, download, session } from '../api.js';
import { vocabulary } from '../vocab.js';
import {
  h, clear, fill, td, badge, progressStack, progressText, bytes, rate, duration, dateTime, timeOnly,
  announce, toast, confirmDialog, errorBox,
} from '../ui.js';
import { rolloutEta } from '../eta.js';

// Event kinds, their classes and the ended states come from the service (vocab.js).
let V = null;
const STEP_WORDS = {
  connect: 'Connecting', facts: 'Reading facts', free_space: 'Checking free space', file_present: 'Checking for the image',
  copy: 'Copying the image', verify_md5: 'Verifying MD5', set_boot: 'Setting the boot image', save: 'Saving the configuration',
  reload: 'Reloading', install: 'Installing', wait_back: 'Waiting for the device to come back', post_check: 'Post-checks',
  restore_boot: 'Restoring the boot image', cleanup: 'Cleaning up', config_backup: 'Backing up the configuration',
  commit: 'Committing the install', rollback: 'Rolling back: old image first', rollback_reload: 'Reloading to the old image',
  rollback_check: 'Checking the old image',
};

export function render(main, { params }) {
  const id = params[0];
  const enc = encodeURIComponent(id);
  let detail = null;
  let alive = true;

  const title = h('h1', { id: 'rollout-title' }, 'Rollout');
  const stateSlot = h('span', { id: 'rollout-state' });
  const meta = h('ul', { class: 'meta' });
  const halt = h('div');
  const errorSlot = h('div');
  const live = h('span', { class: 'live', id: 'live', role: 'status' }, 'Connecting…');
  // Not a live region: steps of many devices would flood a screen reader; announce() speaks
  // the rollout-level events.
  const lastEvent = h('p', { class: 'small muted', id: 'last-event' });

  const btn = (label, cls, onclick, idAttr) => h('button', { type: 'button', class: `btn ${cls}`, id: idAttr, onclick }, label);
  const pauseBtn = btn('Pause', '', () => act('pause', 'Paused: no new step starts.'), 'act-pause');
  const resumeBtn = btn('Resume', 'btn-primary', () => act('resume', 'Resumed.'), 'act-resume');
  const retryBtn = btn('Retry failed devices', '', () => act('retry'), 'act-retry');
  // A second person's approval: the service refuses the submitter's own token (403).
  const approveBtn = btn('Approve and start', 'btn-primary', () => act('approve'), 'act-approve');
  const abortBtn = btn('Abort…', 'btn-danger', abort, 'act-abort');
  const csvBtn = btn('Download report (CSV)', '', downloadCsv, 'act-report');
  const toolbar = h('div', { class: 'toolbar', role: 'group', 'aria-label': 'Rollout actions' }, approveBtn, pauseBtn, resumeBtn, retryBtn, abortBtn, csvBtn);

  const overall = h('div');
  const wavesBox = h('div', { id: 'waves' });
  const skippedBox = h('div');
  const eventsList = h('ol', { class: 'events', id: 'events', 'aria-label': 'Activity, newest first' });
  // Which device's events the activity list shows ('' for all).
  const eventsDevice = h('select', { id: 'events-device', onchange: filterEvents }, h('option', { value: '' }, 'All devices'));

  main.append(
    h('p', { class: 'small' }, h('a', { href: '#/rollouts' }, '← All rollouts')),
    h('div', { class: 'page-head' },
      h('div', null, h('div', { class: 'toolbar' }, title, stateSlot), meta),
      live),
    errorSlot,
    halt,
    h('section', { class: 'card', 'aria-labelledby': 'overall-title' },
      h('div', { class: 'card-head' }, h('h2', { id: 'overall-title' }, 'Progress'), toolbar),
      overall,
      lastEvent),
    h('div', { class: 'rollout-grid' },
      h('div', null, wavesBox, skippedBox),
      h('section', { class: 'card', 'aria-labelledby': 'events-title' },
        h('div', { class: 'card-head' }, h('h2', { id: 'events-title' }, 'Activity'),
          h('div', { class: 'field' }, h('label', { for: 'events-device' }, 'Device'), eventsDevice)),
        eventsList)));

  function filterEvents() {
    const d = eventsDevice.value;
    for (const li of eventsList.children) li.hidden = Boolean(d) && li.dataset.device !== d;
  }

  function drawDeviceFilter() {
    const names = detail.waves.flatMap((w) => w.devices.map((j) => j.device));
    if (eventsDevice.options.length === names.length + 1) return;
    const keep = eventsDevice.value;
    fill(eventsDevice, h('option', { value: '' }, 'All devices'), names.map((n) => h('option', { value: n }, n)));
    eventsDevice.value = names.includes(keep) ? keep : '';
  }

  async function act(what, okText) {
    const button = { approve: approveBtn, pause: pauseBtn, resume: resumeBtn, retry: retryBtn, abort: abortBtn }[what];
    button.disabled = true;
    try {
      const r = await post(`/rollouts/${enc}/${what}`);
      const msg = okText || (r && r.message) || `${what}: done`;
      toast(msg);
      await refresh();
    } catch (err) {
      if (err.status !== 401) toast(`Cannot ${what} the rollout: ${err.message}`, { error: true });
    } finally {
      button.disabled = false;
      drawActions();
    }
  }

  async function abort() {
    const name = detail ? detail.name : id;
    const running = detail ? detail.progress.running : 0;
    const ok = await confirmDialog({
      title: `Abort rollout “${name}”?`,
      body: h('div', null,
        h('p', null, 'Devices stop at their next safe point. A device inside a reload finishes it and is checked; devices not yet started stay on their current version.'),
        running ? h('p', null, h('strong', null, `${running} device${running === 1 ? ' is' : 's are'} being upgraded now.`)) : null,
        h('p', null, 'An aborted rollout cannot be resumed.')),
      ok: 'Abort rollout',
      danger: true,
    });
    if (ok) await act('abort', 'Abort requested: devices stop at their next safe point.');
    else abortBtn.focus();
  }

  async function downloadCsv() {
    csvBtn.disabled = true;
    try {
      const name = await download(`/rollouts/${enc}/report?format=csv`, `fleetup-${id}.csv`);
      announce(`Report downloaded as ${name}`);
    } catch (err) {
      if (err.status !== 401) toast(`Cannot download the report: ${err.message}`, { error: true });
    } finally {
      csvBtn.disabled = false;
    }
  }

  function drawActions() {
    if (!detail) return;
    const ended = V.ended.has(detail.state);
    const paused = detail.paused || detail.state === 'paused';
    const waiting = detail.state === 'awaiting_approval';
    approveBtn.hidden = !waiting;
    pauseBtn.hidden = ended || paused || waiting || detail.state === 'halted';
    resumeBtn.hidden = ended || !paused;
    retryBtn.hidden = !V.retryable.has(detail.state) || detail.abort_requested || !detail.progress.failed;
    abortBtn.hidden = ended || detail.abort_requested;
  }

  function drawHeader() {
    title.textContent = detail.name;
    document.title = `${detail.name} · fleetup`;
    fill(stateSlot, badge(detail.state), detail.abort_requested && !V.ended.has(detail.state) ? badge('aborted', 'abort requested') : null);
    fill(meta,
      h('li', null, 'ID ', h('code', null, detail.id)),
      h('li', null, 'Created ', dateTime(detail.created_at)),
      detail.submitted_by ? h('li', null, 'Submitted by ', h('code', null, detail.submitted_by)) : null,
      detail.approved_by ? h('li', null, 'Approved by ', h('code', null, detail.approved_by)) : null,
      detail.started_at ? h('li', null, 'Started ', dateTime(detail.started_at)) : null,
      detail.finished_at ? h('li', null, 'Finished ', dateTime(detail.finished_at)) : null,
      detail.images && detail.images.length ? h('li', null, 'Image ', detail.images.map((i, k) => [k ? ', ' : '', h('code', null, i)])) : null);
    fill(halt, detail.halt_reason
      ? h('div', { class: `alert ${detail.state === 'halted' ? 'alert-error' : 'alert-warn'}`, role: 'alert' },
        h('strong', null, detail.state === 'halted' ? 'Halted' : 'Note'), detail.halt_reason,
        detail.state === 'halted' ? h('p', { class: 'small' }, 'Retry the failed devices to go on, or abort the rollout.') : null)
      : null);
    const p = detail.progress;
    fill(overall,
      h('dl', { class: 'stats' },
        [['Devices', p.total], ['Succeeded', p.succeeded], ['Running', p.running], ['Pending', p.pending], ['Failed', p.failed], ['Skipped', p.skipped + p.aborted]]
          .map(([l, v]) => h('div', { class: 'stat' }, h('dt', null, l), h('dd', null, v)))),
      progressStack(p),
      h('p', { class: 'small muted', id: 'progress-text' }, progressText(p)),
      etaLine());
  }

  // How it is computed: web/js/eta.js and docs/dashboard.md.
  function etaLine() {
    const e = rolloutEta(detail);
    if (!e) return null;
    const text = e.seconds === null
      ? `ETA once the first device has finished (${e.left} to go)`
      : `ETA about ${duration(e.seconds)}: ${e.left} device${e.left === 1 ? '' : 's'} to go, ${duration(e.average)} per device on average over ${e.finished} finished, ${e.parallel} at a time`;
    return h('p', { class: 'small', id: 'rollout-eta' }, detail.paused ? `${text} (paused)` : text);
  }

  function transferCell(j) {
    const t = j.transfer;
    const copying = j.step === 'copy' && j.step_state === 'started' && j.state === 'running';
    if (!t) return copying ? h('span', { class: 'muted small' }, 'waiting for the device to fetch the image…') : h('span', { class: 'muted' }, '–');
    const total = t.total || 0;
    const pct = total ? Math.min(100, (100 * t.bytes) / total) : 0;
    const active = t.state === 'active';
    const eta = active && t.rate_bps && total ? (total - t.bytes) / t.rate_bps : null;
    const cls = t.state === 'done' || t.state === 'completed' ? 'done' : (t.state === 'failed' ? 'failed' : '');
    const text = [
      `${bytes(t.bytes)}${total ? ` of ${bytes(total)} (${Math.floor(pct)}%)` : ''}`,
      active ? rate(t.rate_bps) : null,
      eta !== null ? `ETA ${duration(eta)}` : null,
      active && t.block_size ? `${t.block_size}-byte blocks` : null,
      !active ? t.state : null,
    ].filter(Boolean).join(' · ');
    return h('div', { class: `xfer ${cls}`, dataset: { bytes: t.bytes, total } },
      h('div', {
        class: 'meter', role: 'progressbar', 'aria-label': `Image transfer to ${j.device}`,
        'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.floor(pct), 'aria-valuetext': text,
      }, h('span', { style: `width:${pct}%` })),
      h('div', { class: 'xfer-text' }, text),
      t.error ? h('div', { class: 'err' }, t.error) : null);
  }

  function timeline(j) {
    const ol = h('ol', { class: 'timeline', 'aria-label': `Steps of ${j.device}` });
    for (const s of j.steps || []) {
      const running = !s.finished_at && j.state === 'running';
      const result = s.result || (running ? 'running' : 'unfinished');
      const secs = s.seconds ?? (running && s.started_at ? (Date.now() - Date.parse(s.started_at)) / 1000 : null);
      ol.append(h('li', { class: `tl-step ${result}`, title: `${s.step}: ${result}${s.started_at ? `, started ${timeOnly(s.started_at)}` : ''}`, dataset: { step: s.step } },
        `${s.step} ${duration(secs)}`,
        result === 'failed' ? h('span', { class: 'visually-hidden' }, ' (failed)') : null));
    }
    if (!ol.children.length) return h('span', { class: 'muted small' }, 'not started');
    return ol;
  }

  function stepCell(j) {
    if (j.waits_for_window && j.state === 'running') {
      return h('span', { class: 'step-now staged', dataset: { step: 'staged' } }, `staged (waits for window ${j.waits_for_window})`);
    }
    if (!j.step) return h('span', { class: 'muted' }, j.state === 'pending' ? 'waiting' : '–');
    const words = STEP_WORDS[j.step] || j.step;
    const status = j.state === 'running' ? (j.step_state === 'done' ? `${j.step} done` : words) : `last: ${j.step}`;
    return h('span', { class: 'step-now', dataset: { step: j.step } }, status);
  }

  function drawWaves() {
    clear(wavesBox);
    for (const w of detail.waves) {
      const rows = h('tbody');
      for (const j of w.devices) {
        // The old version is unknown until the device was reached; then say only where it goes.
        const to = j.new_version || j.target_version;
        const versions = j.old_version ? `${j.old_version} → ${to || '?'}` : (j.new_version ? `now ${j.new_version}` : `→ ${to || '?'}`);
        rows.append(h('tr', { dataset: { device: j.device, state: j.state } },
          td('Device', h('a', { class: 'device-name', href: `#/devices/${encodeURIComponent(j.device)}?rollout=${enc}` }, j.device), j.attempts > 1 ? h('div', { class: 'muted small' }, `attempt ${j.attempts}`) : null),
          td('State', badge(j.state), j.error ? h('div', { class: 'err', role: 'note' }, j.error) : null),
          td('Step', stepCell(j)),
          td('Transfer', transferCell(j)),
          td('Version', h('span', { class: 'mono small nowrap' }, versions)),
          td('Timeline', timeline(j))));
      }
      wavesBox.append(h('section', { class: 'card wave', 'aria-labelledby': `wave-${w.index}`, dataset: { wave: w.index } },
        h('header', null,
          h('h2', { id: `wave-${w.index}` }, w.share ? `${w.name} (${w.share})` : w.name),
          progressStack(w.progress),
          h('span', { class: 'small muted' }, progressText(w.progress))),
        h('div', { class: 'table-wrap' },
          h('table', { class: 'responsive devices' },
            h('thead', null, h('tr', null, ['Device', 'State', 'Step', 'Transfer', 'Version', 'Timeline'].map((c) => h('th', { scope: 'col' }, c)))),
            rows))));
    }
    const skipped = Array.isArray(detail.skipped) ? detail.skipped : [];
    fill(skippedBox, skipped.length
      ? h('section', { class: 'card', 'aria-labelledby': 'skipped-title' },
        h('h2', { id: 'skipped-title' }, `Not touched (${skipped.length})`),
        h('ul', null, skipped.map((s) => h('li', null, h('strong', null, s.device), ': ', s.reason))))
      : null);
  }

  let pollTimer = null;
  function schedulePoll() {
    clearTimeout(pollTimer);
    if (!alive || !detail || V.ended.has(detail.state)) return;
    const copying = detail.waves.some((w) => w.devices.some((j) => j.state === 'running'
      && ((j.transfer && j.transfer.state === 'active') || (j.step === 'copy' && j.step_state === 'started'))));
    const running = detail.progress.running > 0;
    pollTimer = setTimeout(refresh, copying ? 1000 : running ? 2500 : 6000);
  }

  let inFlight = null;
  async function refresh() {
    if (inFlight) return inFlight;
    inFlight = (async () => {
      try {
        const d = await get(`/rollouts/${enc}`);
        if (!alive) return;
        const before = detail && detail.state;
        detail = d;
        errorSlot.replaceChildren();
        drawHeader();
        drawDeviceFilter();
        drawActions();
        drawWaves();
        if (before && before !== d.state) announce(`Rollout ${d.name} is now ${d.state}.`);
      } catch (err) {
        if (alive && err.status !== 401) errorSlot.replaceChildren(errorBox(err, err.status === 404 ? 'No such rollout' : 'Cannot load the rollout'));
      } finally {
        inFlight = null;
        schedulePoll();
      }
    })();
    return inFlight;
  }

  // At most one re-fetch per 400 ms however fast events arrive, and always one after the last.
  let throttle = null;
  let again = false;
  function refreshSoon() {
    if (throttle) { again = true; return; }
    refresh();
    throttle = setTimeout(() => {
      throttle = null;
      if (again) { again = false; refreshSoon(); }
    }, 400);
  }

  const seen = new Set();
  function onEvent(e) {
    let ev;
    try { ev = JSON.parse(e.data); } catch { return; }
    if (!ev || typeof ev !== 'object') { refreshSoon(); return; }
    if (ev.id !== undefined) {
      if (seen.has(ev.id)) return;
      seen.add(ev.id);
    }
    if (ev.message) {
      eventsList.prepend(h('li', { class: V.bad.has(ev.kind) ? 'ev-bad' : '', dataset: { kind: ev.kind, device: ev.device || '' }, hidden: Boolean(eventsDevice.value) && ev.device !== eventsDevice.value },
        h('time', { datetime: ev.at, title: dateTime(ev.at) }, timeOnly(ev.at)),
        h('span', null, ev.device ? h('strong', null, `${ev.device}: `) : null, ev.message)));
      while (eventsList.children.length > 300) eventsList.lastChild.remove();
      lastEvent.textContent = `${timeOnly(ev.at)} ${ev.device ? `${ev.device}: ` : ''}${ev.message}`;
      if (V.announced.has(ev.kind) && historyDone) announce(ev.message);
    }
    refreshSoon();
  }

  // Events replayed from history arrive in a burst right after connecting; only later ones are
  // worth announcing.
  let historyDone = false;
  let source = null;
  function connect() {
    source = new EventSource(`/api/v1/rollouts/${enc}/events?token=${encodeURIComponent(session.token() || '')}`);
    source.addEventListener('open', () => {
      live.className = 'live on';
      live.textContent = 'Live';
      setTimeout(() => { historyDone = true; }, 1500);
    });
    for (const k of V.kinds) source.addEventListener(k, onEvent);
    source.addEventListener('lagged', () => refreshSoon());
    source.addEventListener('error', () => {
      live.className = 'live off';
      if (source.readyState === EventSource.CLOSED) {
        live.textContent = 'Live updates stopped';
        // A refused stream (expired token, deleted rollout) shows up as an API error here.
        refresh();
      } else {
        live.textContent = 'Reconnecting…';
      }
    });
  }

  vocabulary().then((v) => {
    V = v;
    if (!alive) return;
    refresh();
    connect();
  }).catch((err) => {
    if (alive && err.status !== 401) errorSlot.replaceChildren(errorBox(err, 'Cannot load the rollout'));
  });
  // Running steps show a growing duration; redraw those once a second even without news.
  const tick = setInterval(() => { if (V && detail && detail.progress.running && !document.hidden) drawWaves(); }, 1000);

  return () => {
    alive = false;
    if (source) source.close();
    clearTimeout(pollTimer);
    clearTimeout(throttle);
    clearInterval(tick);
  };
}
