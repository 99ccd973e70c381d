// The service's vocabulary (GET /api/v1/vocabulary): event kinds, which are also the SSE event
// names, and rollout and job states with what each means. The dashboard keeps no list of its
// own, so a kind or state the service adds is never missed here.
import { get } from './api.js';

let cached = null;

export function vocabulary() {
  if (!cached) {
    cached = get('/vocabulary').then((v) => {
      const kinds = v.event_kinds.map((k) => k.kind);
      const which = (list, pick, key) => new Set(list.filter(pick).map((x) => x[key]));
      return {
        kinds,
        bad: which(v.event_kinds, (k) => k.bad, 'kind'),
        announced: which(v.event_kinds, (k) => k.rollout_wide, 'kind'),
        ended: which(v.rollout_states, (s) => s.ended, 'state'),
        retryable: which(v.rollout_states, (s) => s.may_retry, 'state'),
        active: which(v.rollout_states, (s) => !s.ended, 'state'),
      };
    }).catch((e) => { cached = null; throw e; });
  }
  return cached;
}
