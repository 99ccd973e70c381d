// Entry point: hash routing, sign-in guard, navigation state.
import { session, setUnauthorizedHandler, get } from './api.js';
import { clear, toast } from './ui.js';
import * as signin from './views/signin.js';
import * as fleet from './views/fleet.js';
import * as rollouts from './views/rollouts.js';
import * as rollout from './views/rollout.js';
import * as device from './views/device.js';
import * as newRollout from './views/new-rollout.js';
import * as images from './views/images.js';
import * as audit from './views/audit.js';
import * as nodes from './views/nodes.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signoutBtn = document.getElementById('signout');
const auditNav = document.getElementById('nav-audit');
let cleanup = null;

// The Audit link shows for a token that may read the audit log: asked once per token.
let auditAskedFor = null;
function offerAudit() {
  const token = session.token();
  if (!token) { auditNav.hidden = true; auditAskedFor = null; return; }
  if (auditAskedFor === token) return;
  auditAskedFor = token;
  get('/audit?limit=1')
    .then(() => { if (session.token() === token) auditNav.hidden = false; })
    .catch(() => { if (session.token() === token) auditNav.hidden = true; });
}

const routes = [
  [/^\/signin$/, signin, 'Sign in', null],
  [/^\/fleet$/, fleet, 'Fleet', 'fleet'],
  [/^\/rollouts$/, rollouts, 'Rollouts', 'rollouts'],
  [/^\/rollouts\/([^/]+)$/, rollout, 'Rollout', 'rollouts'],
  [/^\/devices\/([^/]+)$/, device, 'Device', 'fleet'],
  [/^\/new$/, newRollout, 'New rollout', 'new'],
  [/^\/images$/, images, 'Images', 'images'],
  [/^\/audit$/, audit, 'Audit log', 'audit'],
  [/^\/nodes$/, nodes, 'Nodes and agents', 'nodes'],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/fleet';
  const [path, query = ''] = raw.split('?');
  return { path, query: new URLSearchParams(query) };
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

let lastPath = null;
function route() {
  const { path, query } = parseHash();
  const signedIn = Boolean(session.token());
  if (!signedIn && path !== '/signin') {
    location.replace(`#/signin?next=${encodeURIComponent(path)}`);
    return;
  }
  const match = routes.find(([re]) => re.test(path));
  if (!match) {
    location.replace('#/fleet');
    return;
  }
  const [re, view, title, navKey] = match;
  const params = path.match(re).slice(1).map(decodeURIComponent);
  if (cleanup) { try { cleanup(); } catch { /* a view's teardown must not block navigation */ } }
  cleanup = null;
  nav.hidden = !signedIn;
  signoutBtn.hidden = !signedIn;
  offerAudit();
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.nav === navKey) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${title} · fleetup`;
  clear(main);
  const result = view.render(main, { params, query, go });
  cleanup = typeof result === 'function' ? result : null;
  // Move focus to the new page for keyboard and screen-reader users, but not on the first load.
  if (lastPath !== null && lastPath !== path) main.focus({ preventScroll: true });
  if (lastPath !== path) window.scrollTo(0, 0);
  lastPath = path;
}

setUnauthorizedHandler(() => {
  if (!session.token()) return;
  session.clear();
  toast('Your token was not accepted. Please sign in again.', { error: true });
  const { path } = parseHash();
  location.replace(`#/signin?next=${encodeURIComponent(path === '/signin' ? '/fleet' : path)}`);
});

signoutBtn.addEventListener('click', () => {
  session.clear();
  location.hash = '#/signin';
});

window.addEventListener('hashchange', route);
route();

get('/health', { token: null })
  .then((h) => {
    const v = h.service && h.service.version;
    if (v) document.getElementById('service-version').textContent = `v${v}`;
  })
  .catch(() => { /* health is informative only */ });
