// The REST API client: every call carries the bearer token; a 401 sends the operator to sign in.

const KEY = 'fleetup.token';

export const session = {
  token: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const e = (body && body.error) || {};
    super(e.message || fallback || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || null;
    this.line = e.line ?? null;
    this.column = e.column ?? null;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

async function errorFrom(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON: the status text says enough */ }
  return new ApiError(res.status, body, `${res.status} ${res.statusText}`.trim());
}

export async function request(path, { method = 'GET', body, headers = {}, token = session.token() } = {}) {
  let res;
  try {
    res = await fetch(`/api/v1${path}`, {
      method,
      body,
      headers: { Accept: 'application/json', ...headers, ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    });
  } catch (e) {
    throw new ApiError(0, null, `cannot reach the fleetup service (${e.message}); check that it is running`);
  }
  if (res.status === 401) {
    const err = await errorFrom(res);
    onUnauthorized(err);
    throw err;
  }
  if (!res.ok) throw await errorFrom(res);
  return res;
}

export async function get(path, opts) {
  return (await request(path, opts)).json();
}

export async function post(path, body, contentType = 'application/json') {
  const res = await request(path, {
    method: 'POST',
    body: body === undefined ? undefined : body,
    headers: body === undefined ? {} : { 'Content-Type': contentType },
  });
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** Every device, paging through the API (1000 per page). */
export async function allDevices() {
  const out = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await get(`/devices?limit=1000&offset=${offset}`);
    out.push(...page.devices);
    if (page.devices.length === 0 || out.length >= page.total) return out;
  }
}

/** Fetch a file with the token and hand it to the browser as a download. */
export async function download(path, fallbackName) {
  const res = await request(path, { headers: { Accept: '*/*' } });
  const blob = await res.blob();
  const cd = res.headers.get('Content-Disposition') || '';
  const m = /filename="?([^";]+)"?/.exec(cd);
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = m ? m[1] : fallbackName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  return a.download;
}

/**
 * Upload a file as multipart field `file` with progress (fetch has no upload progress).
 * Returns {promise, abort}.
 */
export function uploadImage(file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('POST', '/api/v1/images');
    xhr.setRequestHeader('Authorization', `Bearer ${session.token()}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener('load', () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* plain-text error */ }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
      const err = new ApiError(xhr.status, body, `${xhr.status} ${xhr.statusText}`);
      if (xhr.status === 401) onUnauthorized(err);
      reject(err);
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, null, 'the upload failed: the connection to the service broke')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, null, 'upload cancelled')));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
