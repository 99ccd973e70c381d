// The rollout page's overall ETA (web/js/eta.js), without a browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rolloutEta } from '../../web/js/eta.js';

const at = (s) => new Date(Date.UTC(2026, 11, 4, 10, 0, s)).toISOString();
const job = (state, start, end) => ({ state, started_at: start === undefined ? null : at(start), finished_at: end === undefined ? null : at(end) });
const detail = (state, jobs) => ({ state, waves: [{ devices: jobs }] });

test('no estimate before a device finished, none once ended', () => {
  const d = detail('running', [job('running', 0), job('pending')]);
  assert.deepEqual(rolloutEta(d, Date.parse(at(5))), { seconds: null, average: null, finished: 0, left: 2, parallel: 1 });
  assert.equal(rolloutEta(detail('completed', [job('succeeded', 0, 60)])), null);
});

test('average per finished device, less what running devices already did, spread over those running', () => {
  // Two finished in 60 s and 120 s: 90 s on average. Two running for 30 s: 60 s left each.
  // Two pending: 90 s each. (120 + 180) / 2 running = 150 s. Skipped devices do not count.
  const d = detail('running', [
    job('succeeded', 0, 60), job('failed', 0, 120), job('skipped', 0, 1),
    job('running', 100), job('running', 100), job('pending'), job('pending'),
  ]);
  const e = rolloutEta(d, Date.parse(at(130)));
  assert.equal(e.average, 90);
  assert.equal(e.left, 4);
  assert.equal(e.parallel, 2);
  assert.equal(e.seconds, 150);
});
