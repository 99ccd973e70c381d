// The dashboard in headless Chromium against a real `fleetup serve` and a `fleetup lab`:
// sign in, see the fleet, upload an image, start a rollout from a playbook, watch device rows
// advance and transfer bars move, pause and resume, see completion, download the report; a
// broken playbook shows its error inline at the right line; the audit log shows the calls.
//
// Run: node --test tests/browser/   (after `cargo build`; FLEETUP_BIN overrides the binary).
// Screenshots land in tests/artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { mkdtemp, mkdir, readFile, writeFile, rm, access } from 'node:fs/promises';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const BIN = process.env.FLEETUP_BIN || path.join(root, 'target', 'debug', 'fleetup');
const ARTIFACTS = path.join(root, 'tests', 'artifacts');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const TOKEN = randomBytes(16).toString('hex');
const IMAGE = 'c2960x-universalk9-mz.152-7.E8.bin';
// Big enough, and the lab's copy rate low enough, that a copy lasts a few seconds and its
// progress bar is seen moving; small enough to keep the test quick.
const IMAGE_SIZE = 1_200_000;
const LAB_RATE = 300_000;
const LAB_DEVICES = 4;

const children = [];
// Whatever happens to this test process, the service and the lab go with it.
process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); });
let work;
let serve;
let lab;
let browser;

/** Start a fleetup subcommand; resolve once a line of its output matches `ready`. */
async function start(args, ready, env = {}) {
  const child = spawn(BIN, args, {
    env: { ...process.env, FLEETUP_API_TOKEN: TOKEN, FLEETUP_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines = [];
  const matches = [];
  const found = new Promise((resolve, reject) => {
    const onLine = (line) => {
      lines.push(line);
      const m = ready.exec(line);
      if (m) { matches.push(m); resolve(m); }
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    child.once('error', (e) => reject(new Error(`cannot start ${BIN}: ${e.message} (build it with cargo build, or set FLEETUP_BIN)`)));
    child.once('exit', (code) => reject(new Error(`fleetup ${args[0]} exited (${code}) before it was ready:\n${lines.join('\n')}`)));
  });
  const m = await found;
  return { child, lines, match: m };
}

async function api(method, p, body, contentType) {
  const res = await fetch(`${serve.url}/api/v1${p}`, {
    method,
    body,
    headers: { Authorization: `Bearer ${TOKEN}`, ...(contentType ? { 'Content-Type': contentType } : {}) },
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

before(async () => {
  await access(BIN).catch(() => { throw new Error(`no fleetup binary at ${BIN}: run cargo build first, or set FLEETUP_BIN`); });
  work = await mkdtemp(path.join(tmpdir(), 'fleetup-browser-'));
  await mkdir(ARTIFACTS, { recursive: true });

  // Port 0 everywhere: serve prints what it bound.
  const s = await start(['serve', '--data-dir', path.join(work, 'data'), '--http', '127.0.0.1:0', '--tftp', '127.0.0.1:0', '--ftp', 'off', '--image-http', 'off'],
    /TFTP: (\S+)/);
  const urlLine = s.lines.find((l) => l.includes('dashboard and API: '));
  serve = { ...s, url: urlLine.split('dashboard and API: ')[1].trim().replace(/\/$/, ''), tftp: s.match[1] };

  // A random loopback /24 of our own, so parallel test runs never share device addresses.
  const base = `127.${randomInt(100, 250)}.${randomInt(1, 250)}.1`;
  const inventory = path.join(work, 'lab-inventory.yml');
  const labArgs = ['lab', '--devices', String(LAB_DEVICES), '--base-ip', base, '--ssh-port', '0',
    '--state-dir', path.join(work, 'lab'), '--write-inventory', inventory, '--boot-time', '1', '--rate', String(LAB_RATE)];
  if (serve.tftp !== 'off') labArgs.push('--tftp-port', serve.tftp.split(':').pop());
  lab = await start(labArgs, new RegExp(`^lab-sw-${String(LAB_DEVICES).padStart(3, '0')}\\s`));
  const imported = await api('POST', '/inventory/import', await readFile(inventory, 'utf8'), 'application/yaml');
  assert.equal(imported.status, 200, JSON.stringify(imported.body));
  assert.equal(imported.body.created, LAB_DEVICES);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close();
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      await Promise.race([once(c, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
  }
  if (work) await rm(work, { recursive: true, force: true });
});

let imageBytes = null;
/** The test image in the store (uploaded over the API unless a test already did it). */
async function ensureImage() {
  const have = await api('GET', '/images');
  if (have.body.images.some((i) => i.file_name === IMAGE)) return;
  imageBytes ??= randomBytes(IMAGE_SIZE);
  const form = new FormData();
  form.append('file', new Blob([imageBytes]), IMAGE);
  const res = await fetch(`${serve.url}/api/v1/images`, { method: 'POST', body: form, headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 201, await res.text());
}

/** A page with console errors collected, so a broken script fails the test. */
async function newPage(opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true, ...opts });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  return page;
}

/** A link of the main navigation. */
function nav(page, name) {
  return page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });
}

async function signIn(page) {
  await page.goto(`${serve.url}/`);
  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#devices tbody tr[data-device]').first().waitFor();
}

test('sign-in rejects a wrong token; sign-out forgets the token', async () => {
  const page = await newPage();
  await page.goto(`${serve.url}/#/rollouts`);
  // Not signed in: the route leads to the sign-in form, which remembers where we were going.
  await page.getByLabel('API token').waitFor();
  assert.match(page.url(), /#\/signin\?next=%2Frollouts$/);
  await page.getByLabel('API token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('This token is not valid for this service.').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('fleetup.token')), null);

  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#rollouts').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('fleetup.token')), TOKEN);

  // A token that stops working (rotated on the server) sends the operator back to sign in.
  await page.evaluate(() => sessionStorage.setItem('fleetup.token', 'rotated-away'));
  await nav(page, 'Images').click();
  await page.getByLabel('API token').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('fleetup.token')), null);

  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#images').waitFor();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API token').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('fleetup.token')), null);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('an invalid playbook shows its error inline, at its line', async () => {
  const page = await newPage();
  await signIn(page);
  await nav(page, 'New rollout').click();
  // `grops` on line 4 is not a field of `targets`.
  const broken = ['name: broken', 'targets:', '  all: false', '  grops: [lab]', 'image:', `  ios: ${IMAGE}`, ''].join('\n');
  const fromApi = await api('POST', '/rollouts?dry_run=true', broken, 'application/yaml');
  assert.equal(fromApi.status, 422);
  assert.equal(fromApi.body.error.line, 4, JSON.stringify(fromApi.body));

  await page.getByRole('textbox', { name: 'Playbook (YAML)' }).fill(broken);
  await page.getByRole('button', { name: 'Preview plan' }).click();
  const box = page.locator('#playbook-error-text');
  await box.waitFor();
  assert.equal(await box.getAttribute('data-line'), '4');
  assert.equal(await box.getAttribute('data-column'), String(fromApi.body.error.column));
  const text = await box.innerText();
  assert.match(text, new RegExp(`line 4, column ${fromApi.body.error.column}`));
  assert.ok(text.includes('grops'), text);
  assert.equal(await page.locator('.gutter .bad-line').innerText(), '4');
  assert.equal(await page.getByRole('textbox', { name: 'Playbook (YAML)' }).getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('#plan .plan-wave').count(), 0);

  // "Go to line 4" puts the caret on that line, at the column.
  await page.getByRole('button', { name: 'Go to line 4' }).click();
  const caretLine = await page.evaluate(() => {
    const ta = document.getElementById('playbook');
    return ta.value.slice(0, ta.selectionStart).split('\n').length;
  });
  assert.equal(caretLine, 4);
  await page.screenshot({ path: path.join(ARTIFACTS, 'playbook-error.png') });
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('an image uploaded from the Images page, with its checksums', async () => {
  const page = await newPage();
  await signIn(page);
  // Images: upload through the page, with its progress bar; checksums shown match ours.
  imageBytes = randomBytes(IMAGE_SIZE);
  const imagePath = path.join(work, IMAGE);
  await writeFile(imagePath, imageBytes);
  const md5 = createHash('md5').update(imageBytes).digest('hex');
  const sha256 = createHash('sha256').update(imageBytes).digest('hex');
  await nav(page, 'Images').click();
  const bar = page.locator('#upload-progress');
  await page.getByLabel('Image file').setInputFiles(imagePath);
  // Record every value the progress bar takes.
  await page.evaluate(() => {
    window.progressSeen = [];
    const el = document.getElementById('upload-progress');
    new MutationObserver(() => window.progressSeen.push(Number(el.value))).observe(el, { attributes: true, attributeFilter: ['value'] });
  });
  await page.getByRole('button', { name: 'Upload' }).click();
  const imageRow = page.locator(`#images tr[data-file="${IMAGE}"]`);
  await imageRow.waitFor();
  const rowText = await imageRow.innerText();
  assert.ok(rowText.includes(md5), rowText);
  assert.ok(rowText.includes(sha256), rowText);
  assert.match(await page.locator('#upload-status').innerText(), /added/);
  const seen = await page.evaluate(() => window.progressSeen);
  assert.equal(Math.max(...seen), 100, `progress values: ${seen}`);
  assert.equal(await bar.isVisible(), false);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a halted rollout: error in words, retry, abort after confirmation, report', { timeout: 120_000 }, async () => {
  // FTP is off in this service, so the canary fails at once with a configuration error:
  // a deterministic way to a halted rollout.
  const page = await newPage();
  await signIn(page);
  await ensureImage();
  await nav(page, 'New rollout').click();
  const playbook = ['name: halts-at-canary', 'targets:', '  groups: [lab]', 'image:', `  ios: ${IMAGE}`,
    'transfer:', '  protocol: ftp', '  server: 127.0.0.1', 'strategy:', '  canary: 1', '  waves: ["100%"]', ''].join('\n');
  await page.getByRole('textbox', { name: 'Playbook (YAML)' }).fill(playbook);
  await page.getByRole('button', { name: 'Start rollout…' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Start rollout' }).click();
  await page.waitForURL(/#\/rollouts\/[^/]+$/);
  const id = decodeURIComponent(page.url().split('#/rollouts/')[1]);
  await page.locator('#rollout-state [data-state="halted"]').waitFor();

  // The device's error, in the words the engine recorded, on its row; the halt reason on top.
  const detail = (await api('GET', `/rollouts/${encodeURIComponent(id)}`)).body;
  const failed = detail.waves[0].devices[0];
  assert.equal(failed.state, 'failed');
  const row = page.locator(`#waves tr[data-device="${failed.device}"]`);
  assert.ok((await row.innerText()).includes(failed.error), await row.innerText());
  assert.ok((await page.getByRole('alert').filter({ hasText: 'Halted' }).innerText()).includes(detail.halt_reason));
  assert.equal(await page.getByRole('button', { name: 'Pause' }).isVisible(), false);

  // Retry puts the device back in line; it fails again the same way and the rollout halts again.
  await page.getByRole('button', { name: 'Retry failed devices' }).click();
  await page.locator('#events li', { hasText: 'put back in line' }).waitFor();
  await page.waitForFunction((reason) => [...document.querySelectorAll('#events li')]
    .filter((li) => li.textContent.includes(reason)).length === 2, detail.halt_reason);
  await page.locator('#rollout-state [data-state="halted"]').waitFor();

  // Abort asks first; Cancel changes nothing.
  await page.getByRole('button', { name: 'Abort…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /Abort rollout “halts-at-canary”/);
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal((await api('GET', `/rollouts/${encodeURIComponent(id)}`)).body.state, 'halted');
  await page.getByRole('button', { name: 'Abort…' }).click();
  await dialog.getByRole('button', { name: 'Abort rollout' }).click();
  await page.locator('#rollout-state [data-state="aborted"]').waitFor();
  assert.equal((await api('GET', `/rollouts/${encodeURIComponent(id)}`)).body.state, 'aborted');
  for (const name of ['Pause', 'Resume', 'Retry failed devices', 'Abort…']) {
    assert.equal(await page.getByRole('button', { name }).isVisible(), false, name);
  }

  // Every kind of event this rollout recorded shows in the activity list, and the page knows
  // every kind the service can emit (its list comes from the service's vocabulary).
  const recorded = (await api('GET', `/rollouts/${encodeURIComponent(id)}/activity`)).body.events;
  const kinds = [...new Set(recorded.map((e) => e.kind))].sort();
  assert.ok(kinds.length >= 8, kinds.join(' '));
  await page.waitForFunction((n) => document.querySelectorAll('#events li').length >= n, recorded.length);
  const shown = await page.$$eval('#events li', (lis) => [...new Set(lis.map((li) => li.dataset.kind))].sort());
  assert.deepEqual(shown, kinds);
  const vocabulary = (await api('GET', '/vocabulary')).body;
  for (const k of ['held', 'device_requeued', 'reload_not_sent', 'waiting_window', 'completed_with_failures']) {
    assert.ok(vocabulary.event_kinds.some((e) => e.kind === k), k);
  }

  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download report (CSV)' }).click()]);
  assert.equal(download.suggestedFilename(), `fleetup-${id}.csv`);
  const csv = await readFile(await download.path(), 'utf8');
  assert.ok(csv.includes(failed.device), csv);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('fleet, image upload, and a rollout watched live from start to completion', { timeout: 240_000 }, async (t) => {
  if (serve.tftp === 'off') {
    t.skip('this fleetup serve runs no TFTP server yet, so lab devices cannot fetch an image');
    return;
  }
  const page = await newPage();
  await signIn(page);

  // Fleet: every lab device listed with its site and platform; the chart has the lab site.
  const rows = page.locator('#devices tbody tr[data-device]');
  await page.waitForFunction((n) => document.querySelectorAll('#devices tbody tr[data-device]').length === n, LAB_DEVICES);
  assert.equal(await rows.count(), LAB_DEVICES);
  assert.match(await rows.first().innerText(), /lab-sw-001[\s\S]*ios[\s\S]*lab/);
  await page.locator('#version-chart .chart-row[data-site="lab"]').waitFor();
  // Search narrows the list.
  await page.getByLabel('Search').fill('lab-sw-002');
  await page.waitForFunction(() => document.querySelectorAll('#devices tbody tr[data-device]').length === 1);
  await page.getByLabel('Search').fill('');
  await page.waitForFunction((n) => document.querySelectorAll('#devices tbody tr[data-device]').length === n, LAB_DEVICES);

  await ensureImage();

  // The golden image, set on the Fleet page, is every lab device's target: none shows
  // "No target" any more, and the list of golden images has the entry.
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.waitForFunction((img) => [...document.querySelectorAll('#g-image option')].some((o) => o.value === img), IMAGE);
  await page.locator('#g-image').selectOption(IMAGE);
  await page.locator('#g-platform').selectOption('ios');
  await page.locator('#g-set').click();
  await page.locator('#golden tr[data-scope="platform=ios"]').waitFor();
  assert.match(await page.locator('#golden tr[data-scope="platform=ios"]').innerText(), new RegExp(IMAGE.replace(/[.()]/g, '\\$&')));
  await page.waitForFunction(() => ![...document.querySelectorAll('#devices tr[data-device]')].some((r) => r.innerText.includes('No target')));

  // Start a rollout from a playbook: preview, then start (confirmation dialog).
  await nav(page, 'New rollout').click();
  const playbook = [
    'name: browser-test-rollout',
    'targets:',
    '  groups: [lab]',
    'image:',
    `  ios: ${IMAGE}`,
    'transfer:',
    '  protocol: tftp',
    '  server: 127.0.0.1',
    'strategy:',
    '  canary: 1',
    '  waves: ["100%"]',
    '  concurrency: 4',
    '  max_failures: 0',
    '  timeouts: {poll: 1}',
    '',
  ].join('\n');
  await page.getByRole('textbox', { name: 'Playbook (YAML)' }).fill(playbook);
  await page.getByRole('button', { name: 'Preview plan' }).click();
  await page.locator('#plan .plan-wave').first().waitFor();
  assert.match(await page.locator('#plan').innerText(), new RegExp(`${LAB_DEVICES} devices to upgrade`));
  await page.getByRole('button', { name: 'Start rollout…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /Start rollout “browser-test-rollout”/);
  await dialog.getByRole('button', { name: 'Start rollout' }).click();
  await page.waitForURL(/#\/rollouts\/[^/]+$/);
  const rolloutId = decodeURIComponent(page.url().split('#/rollouts/')[1]);
  await page.locator('#waves tr[data-device]').first().waitFor();
  assert.equal(await page.locator('#waves tr[data-device]').count(), LAB_DEVICES);

  // Live: the canary reaches its copy and the transfer bar grows, without any reload.
  await page.waitForFunction(() => [...document.querySelectorAll('.xfer[data-total]')]
    .some((x) => Number(x.dataset.bytes) > 0 && Number(x.dataset.bytes) < Number(x.dataset.total)), null, { timeout: 60_000 });
  const firstBytes = await page.evaluate(() => Math.max(...[...document.querySelectorAll('.xfer[data-total]')].map((x) => Number(x.dataset.bytes))));
  await page.waitForFunction((b) => [...document.querySelectorAll('.xfer[data-total]')].some((x) => Number(x.dataset.bytes) > b), firstBytes, { timeout: 60_000 });
  await page.screenshot({ path: path.join(ARTIFACTS, 'rollout-canary.png'), fullPage: true });

  // Steps advance: the canary's timeline gains finished steps while we watch.
  const canary = page.locator('#waves section[data-wave="0"] tr[data-device]');
  await page.waitForFunction(() => document.querySelectorAll('#waves section[data-wave="0"] .tl-step.done').length >= 2);
  assert.equal(await page.locator('#live').innerText(), 'Live');

  // Pause, then resume.
  await page.getByRole('button', { name: 'Pause' }).click();
  await page.locator('#rollout-state [data-state="paused"]').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Resume' }).isVisible(), true);
  assert.equal(await page.getByRole('button', { name: 'Pause' }).isVisible(), false);
  const paused = await api('GET', `/rollouts/${encodeURIComponent(rolloutId)}`);
  assert.equal(paused.body.paused, true);
  await page.getByRole('button', { name: 'Resume' }).click();
  await page.locator('#rollout-state [data-state="paused"]').waitFor({ state: 'detached' });
  assert.equal((await api('GET', `/rollouts/${encodeURIComponent(rolloutId)}`)).body.paused, false);

  // The next wave copies to several devices at once: the screenshot of a rollout in progress.
  await page.waitForFunction(() => [...document.querySelectorAll('#waves section[data-wave="1"] .xfer[data-total]')]
    .some((x) => Number(x.dataset.bytes) > 0 && Number(x.dataset.bytes) < Number(x.dataset.total)), null, { timeout: 120_000 });
  await page.screenshot({ path: path.join(ARTIFACTS, 'rollout-in-progress.png'), fullPage: true });
  // The canary has finished: the overall ETA is based on how long it took.
  await page.waitForFunction(() => /ETA about .+ over 1 finished/.test(document.getElementById('rollout-eta')?.textContent || ''));

  // Completion, seen live: every row succeeded, each with copy and reload in its timeline.
  await page.locator('#rollout-state [data-state="completed"]').waitFor({ timeout: 180_000 });
  await page.waitForFunction((n) => document.querySelectorAll('#waves tr[data-state="succeeded"]').length === n, LAB_DEVICES);
  for (const step of ['copy', 'verify_md5', 'reload']) {
    assert.equal(await page.locator(`#waves .tl-step.done[data-step="${step}"]`).count(), LAB_DEVICES, step);
  }
  assert.match(await canary.innerText(), /succeeded/);
  assert.match(await page.locator('#progress-text').innerText(), new RegExp(`${LAB_DEVICES} of ${LAB_DEVICES} done`));
  assert.ok((await page.locator('#events li').count()) > LAB_DEVICES);
  await page.screenshot({ path: path.join(ARTIFACTS, 'rollout-completed.png'), fullPage: true });

  // The report, fetched with the token and saved by the browser.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download report (CSV)' }).click()]);
  const csv = await readFile(await download.path(), 'utf8');
  for (let k = 1; k <= LAB_DEVICES; k += 1) assert.ok(csv.includes(`lab-sw-${String(k).padStart(3, '0')}`), csv);

  // The fleet now runs the target everywhere: the lab site's bar is all target.
  await nav(page, 'Fleet').click();
  await page.waitForFunction((n) => document.getElementById('stat-current')?.textContent === String(n), LAB_DEVICES);
  assert.match(await page.locator('#version-chart .chart-row[data-site="lab"]').innerText(), new RegExp(`100%[\\s\\S]*${LAB_DEVICES}/${LAB_DEVICES}`));
  assert.equal(await page.locator('#devices tr[data-device] .badge[data-state="current"]').count(), LAB_DEVICES);
  await page.screenshot({ path: path.join(ARTIFACTS, 'fleet.png'), fullPage: true });

  // The rollouts list shows it completed.
  await nav(page, 'Rollouts').click();
  const listed = page.locator(`#rollouts tr[data-rollout="${rolloutId}"]`);
  await listed.waitFor();
  assert.match(await listed.innerText(), /completed/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('the device page: steps with commands and outputs, facts, rollouts; the activity filtered by device', { timeout: 120_000 }, async (t) => {
  const done = (await api('GET', '/rollouts')).body.rollouts.find((r) => r.name === 'browser-test-rollout' && r.state === 'completed');
  if (!done) {
    t.skip('needs the completed rollout of the full-flow test');
    return;
  }
  const device = 'lab-sw-002';
  const page = await newPage();
  await signIn(page);
  await page.goto(`${serve.url}/#/rollouts/${encodeURIComponent(done.id)}`);
  await page.locator('#waves tr[data-device]').first().waitFor();

  // The activity list, filtered to one device: only its events remain visible.
  await page.waitForFunction(() => document.querySelectorAll('#events li').length > 10);
  await page.getByLabel('Device', { exact: true }).selectOption(device);
  const shown = await page.locator('#events li:not([hidden])').evaluateAll((lis) => lis.map((li) => li.dataset.device));
  assert.ok(shown.length >= 5, `${shown.length} events shown`);
  assert.ok(shown.every((d) => d === device), shown.join(', '));
  assert.ok((await page.locator('#events li[hidden]').count()) > 0);
  await page.getByLabel('Device', { exact: true }).selectOption('');
  assert.equal(await page.locator('#events li[hidden]').count(), 0);

  // The device's name on the rollout page leads to its page, showing that rollout.
  await page.locator(`#waves tr[data-device="${device}"] a.device-name`).click();
  await page.waitForURL(new RegExp(`#/devices/${device}\\?rollout=`));
  await page.locator('#device-title', { hasText: device }).waitFor();
  const copy = page.locator('#device-steps details[data-step="copy"]');
  await copy.waitFor();
  await copy.locator('summary').click();
  const copyCmd = copy.locator('.tr-command').first();
  assert.match(await copyCmd.locator('.tr-cmd').innerText(), /^copy tftp:\/\/127\.0\.0\.1\S*\/c2960x\S+ flash:c2960x/);
  assert.match(await copyCmd.locator('.tr-out').innerText(), /bytes copied/);
  assert.ok(await copyCmd.locator('.tr-out').isVisible());
  assert.match(await copy.innerText(), /answered[\s\S]*Destination filename/);
  const reload = page.locator('#device-steps details[data-step="reload"]');
  await reload.locator('summary').click();
  assert.match(await reload.locator('.tr-cmd').first().innerText(), /^reload$/);

  // The running configuration before and after the rollout: the boot change as + lines.
  const configDiff = page.locator('#device-config-diff pre.config-diff');
  await configDiff.waitFor();
  assert.match(await configDiff.innerText(), /^\+boot system \S*c2960x/m);

  // Its facts now and over time, its transfer, and its rollouts.
  assert.match(await page.locator('#device-facts').innerText(), /15\.2\(7\)E8/);
  await page.getByText('History of the facts').click();
  assert.ok((await page.locator('#facts-history tbody tr').count()) >= 1);
  assert.match(await page.locator('#device-transfer').innerText(), new RegExp(`${IMAGE}[\\s\\S]*completed`));
  const row = page.locator(`#device-rollouts tr[data-rollout="${done.id}"]`);
  assert.match(await row.innerText(), /browser-test-rollout[\s\S]*succeeded[\s\S]*→ 15\.2\(7\)E8/);
  await page.screenshot({ path: path.join(ARTIFACTS, 'device.png'), fullPage: true });

  // From the fleet list too.
  await nav(page, 'Fleet').click();
  await page.locator('#devices a.device-name', { hasText: 'lab-sw-001' }).click();
  await page.locator('#device-title', { hasText: 'lab-sw-001' }).waitFor();
  await page.locator(`#device-rollouts tr[data-rollout="${done.id}"]`).waitFor();
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('the audit log: a mutating call shows, filtered by token name, older entries a page at a time', async () => {
  // A mutating call of the admin token: a viewer token made for this test.
  const viewer = `audit-viewer-${randomBytes(4).toString('hex')}`;
  const created = await api('POST', '/tokens', JSON.stringify({ name: viewer, role: 'viewer' }), 'application/json');
  assert.equal(created.status, 201, JSON.stringify(created.body));
  // The viewer tries to change something, more times than one page holds: each refused, each kept.
  const tries = 55;
  for (let i = 0; i < tries; i += 1) {
    const res = await fetch(`${serve.url}/api/v1/rollouts/none-${i}/pause`, { method: 'POST', headers: { Authorization: `Bearer ${created.body.secret}` } });
    assert.equal(res.status, 403);
  }
  // The newest mutating call: the admin token revokes the viewer's.
  const revoked = await api('DELETE', `/tokens/${viewer}`);
  assert.equal(revoked.status, 200, JSON.stringify(revoked.body));

  const page = await newPage();
  await signIn(page);
  await nav(page, 'Audit').click();
  await page.waitForURL(/#\/audit$/);
  // The revocation, by the admin token (the service's first), answered 200: the newest row.
  const revocation = page.locator('#audit tbody tr[data-token="admin"][data-status="200"]', { hasText: `DELETE /api/v1/tokens/${viewer}` });
  await revocation.waitFor();
  assert.equal(await page.locator('#audit tbody tr[data-token]').first().getAttribute('data-id'), await revocation.getAttribute('data-id'));
  assert.match(await revocation.innerText(), /admin[\s\S]*admin[\s\S]*DELETE \/api\/v1\/tokens\/\S+[\s\S]*200 done/);

  // Only the viewer's calls: a page of them, then the older ones.
  await page.getByLabel('Token name').fill(viewer);
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(new RegExp(`#/audit\\?by=${viewer}$`));
  const rows = page.locator('#audit tbody tr[data-token]');
  await page.waitForFunction(() => document.querySelectorAll('#audit tbody tr[data-token]').length === 50);
  const older = page.getByRole('button', { name: 'Show older entries' });
  assert.equal(await older.isVisible(), true);
  await older.click();
  await page.waitForFunction((n) => document.querySelectorAll('#audit tbody tr[data-token]').length === n, tries);
  assert.equal(await older.isVisible(), false);
  assert.match(await page.locator('#audit-status').innerText(), new RegExp(`${tries} entries, the oldest included`));
  const seen = await rows.evaluateAll((trs) => trs.map((tr) => ({ id: Number(tr.dataset.id), token: tr.dataset.token, status: tr.dataset.status, text: tr.innerText })));
  assert.ok(seen.every((r) => r.token === viewer && r.status === '403' && /viewer[\s\S]*refused/.test(r.text)), JSON.stringify(seen[0]));
  assert.ok(seen.every((r, i) => i === 0 || r.id < seen[i - 1].id), 'newest first, no entry twice');
  assert.match(seen[0].text, new RegExp(`POST /api/v1/rollouts/none-${tries - 1}/pause`));
  assert.match(seen[tries - 1].text, /POST \/api\/v1\/rollouts\/none-0\/pause/);
  await page.screenshot({ path: path.join(ARTIFACTS, 'audit.png'), fullPage: true });

  // "Show all" lifts the filter.
  await page.getByRole('link', { name: 'Show all' }).click();
  await page.waitForURL(/#\/audit$/);
  await revocation.waitFor();
  assert.equal(await page.getByLabel('Token name').inputValue(), '');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('phone-sized screen: the rollout list and fleet stay usable', async () => {
  const page = await newPage({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
  await signIn(page);
  // No horizontal scrolling of the page itself.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'fleet-phone.png') });
  await nav(page, 'Rollouts').click();
  await page.locator('#rollouts').waitFor();
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('the nodes page shows this node and a site agent, live and then gone', { timeout: 60_000 }, async () => {
  const agent = await start(['agent', '--site', 'branch-7', '--server', serve.url, '--name', 'agent-branch-7',
    '--data-dir', path.join(work, 'agent'), '--tftp', '127.0.0.1:0', '--heartbeat', '1'], /TFTP: (\S+)/,
  { FLEETUP_AGENT_TOKEN: TOKEN });
  const tftp = agent.match[1];
  const page = await newPage();
  await signIn(page);
  await nav(page, 'Nodes').click();
  const row = page.locator('#agents tr[data-agent="agent-branch-7"]');
  await row.waitFor();
  await row.getByText('live', { exact: true }).waitFor();
  const text = await row.innerText();
  assert.match(text, /branch-7/);
  assert.ok(text.includes(tftp), `the agent's TFTP address ${tftp} in: ${text}`);
  const version = (await api('GET', '/health')).body.service.version;
  assert.ok(text.includes(version), `the agent's version ${version} in: ${text}`);
  // With the admin token it drives its site's devices; it holds no job now.
  assert.match(text, /drives its site; none held now/);
  // This node, with the API address other nodes fetch images from.
  const node = page.locator('#nodes tbody tr[data-node]').first();
  assert.ok((await node.innerText()).includes(serve.url), await node.innerText());
  assert.equal(await page.locator('#nodes-database').innerText(), 'sqlite');

  // Killed: after three missed heartbeats the page says it is not answering.
  agent.child.kill('SIGKILL');
  await row.getByText('not answering', { exact: true }).waitFor({ timeout: 20_000 });
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
