// DOM and formatting helpers. Server data only ever enters the page as text nodes, never as
// HTML, so a device or file name cannot inject markup.

/** Create an element: h('a', {href: '#/x', class: 'y'}, 'text', child, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'value' && 'value' in el) el.value = v;
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** SVG element with attributes. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];
export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i += 1; }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${UNITS[i]}`;
}

export function rate(bps) {
  return bps ? `${bytes(bps)}/s` : '–';
}

/** 75 -> "1 min 15 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.max(0, seconds);
  if (s < 0.1) return '<0.1 s';
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function ago(iso, now = Date.now()) {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.round((now - t) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function dateTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function timeOnly(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString();
}

/** A <time> showing "5 min ago" with the exact time as tooltip. */
export function relTime(iso) {
  if (!iso) return h('span', { class: 'muted' }, 'never');
  return h('time', { datetime: iso, title: dateTime(iso) }, ago(iso));
}

const STATE_TONE = {
  awaiting_approval: 'warn', scheduled: 'idle', running: 'run', paused: 'warn', halted: 'bad', completed: 'ok', failed: 'bad', aborted: 'warn',
  pending: 'idle', succeeded: 'ok', skipped: 'idle', rolled_back: 'bad',
  current: 'ok', outdated: 'warn', ahead: 'run', unknown: 'idle', upgrading: 'run',
  live: 'ok', gone: 'bad',
};
export function badge(state, label = state) {
  return h('span', { class: `badge ${STATE_TONE[state] || 'idle'}`, 'data-state': state }, label);
}

/** Stacked bar of a progress object {total, succeeded, running, failed, skipped, aborted}. */
export function progressStack(p, label) {
  const total = p.total || 0;
  const parts = [['succeeded', 's-ok'], ['running', 's-run'], ['failed', 's-bad'], ['aborted', 's-abort'], ['skipped', 's-skip']];
  const bar = h('div', { class: 'stack', role: 'img', 'aria-label': label || progressText(p) });
  for (const [k, cls] of parts) {
    const n = p[k] || 0;
    if (n && total) bar.append(h('span', { class: cls, style: `width:${(100 * n) / total}%`, title: `${n} ${k}` }));
  }
  return bar;
}

export function progressText(p) {
  const done = (p.succeeded || 0) + (p.failed || 0) + (p.skipped || 0) + (p.aborted || 0);
  const bits = [`${done} of ${p.total || 0} done`];
  if (p.running) bits.push(`${p.running} running`);
  if (p.failed) bits.push(`${p.failed} failed`);
  if (p.rolled_back) bits.push(`${p.rolled_back} rolled back`);
  if (p.aborted) bits.push(`${p.aborted} aborted`);
  return bits.join(', ');
}

/** Say something to screen readers without moving focus. */
export function announce(text) {
  const el = document.getElementById('announcer');
  if (!el) return;
  el.textContent = '';
  // A fresh text node after a tick makes screen readers repeat identical messages too.
  setTimeout(() => { el.textContent = text; }, 30);
}

export function toast(text, { error = false } = {}) {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast${error ? ' error' : ''}`, role: error ? 'alert' : 'status' }, text);
  box.append(t);
  setTimeout(() => t.remove(), error ? 9000 : 5000);
}

/** A modal confirmation; resolves true when the operator confirms. */
export function confirmDialog({ title, body, ok = 'OK', danger = false }) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  const b = clear(document.getElementById('confirm-body'));
  append(b, [typeof body === 'string' ? h('p', null, body) : body]);
  const okBtn = document.getElementById('confirm-ok');
  okBtn.textContent = ok;
  okBtn.className = danger ? 'btn btn-danger' : 'btn btn-primary';
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.showModal();
    // Safe default: focus lands on Cancel, so Enter alone never aborts a rollout.
    document.getElementById('confirm-cancel').focus();
  });
}

export function errorBox(err, title = 'Something went wrong') {
  return h('div', { class: 'alert alert-error', role: 'alert' }, h('strong', null, title), err.message || String(err));
}

/** td with a label for the stacked phone layout. */
export function td(label, ...children) {
  // One wrapper, so the phone layout's label column stays a two-cell grid.
  return h('td', { 'data-label': label }, h('div', { class: 'cell' }, ...children));
}

/** Replace an element's children, skipping null/false like h() does. */
export function fill(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}
