// The overall ETA of a rollout, from what its finished devices took. Pure: tested in
// tests/browser/eta.test.mjs without a browser.

const ENDED = new Set(['completed', 'completed_with_failures', 'failed', 'aborted']);
const FINISHED = new Set(['succeeded', 'failed']);

function seconds(from, to) {
  const a = Date.parse(from);
  const b = Date.parse(to);
  return Number.isFinite(a) && Number.isFinite(b) && b >= a ? (b - a) / 1000 : null;
}

/**
 * { seconds, average, finished, left, parallel } or null when there is nothing to estimate.
 * `seconds` is null until a device has finished (nothing to base it on yet).
 *
 * average: the mean time from start to end of the devices that ran and finished (succeeded
 * or failed; skipped devices did nothing). Work left: each running device's average minus
 * what it has already run (never below zero), plus the average for each pending device.
 * ETA: that work divided by the number of devices running now (at least one).
 */
export function rolloutEta(detail, now = Date.now()) {
  if (!detail || ENDED.has(detail.state)) return null;
  const jobs = (detail.waves || []).flatMap((w) => w.devices || []);
  const running = jobs.filter((j) => j.state === 'running');
  const pending = jobs.filter((j) => j.state === 'pending');
  const left = running.length + pending.length;
  if (!left) return null;
  const took = jobs
    .filter((j) => FINISHED.has(j.state) && j.started_at && j.finished_at)
    .map((j) => seconds(j.started_at, j.finished_at))
    .filter((s) => s !== null);
  const parallel = Math.max(1, running.length);
  if (!took.length) return { seconds: null, average: null, finished: 0, left, parallel };
  const average = took.reduce((a, b) => a + b, 0) / took.length;
  let work = pending.length * average;
  for (const j of running) {
    const ran = j.started_at ? seconds(j.started_at, new Date(now).toISOString()) : 0;
    work += Math.max(0, average - (ran || 0));
  }
  return { seconds: work / parallel, average, finished: took.length, left, parallel };
}
