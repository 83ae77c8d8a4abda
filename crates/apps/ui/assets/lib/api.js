// The node's API, with the login cookie (same origin): JSON in and out, errors thrown as
// their one line.

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(method, path, body) {
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || `${res.status} ${res.statusText}`);
  return data;
}

export const get = (p) => api('GET', p);
export const post = (p, b = {}) => api('POST', p, b);
export const put = (p, b = {}) => api('PUT', p, b);
export const patch = (p, b = {}) => api('PATCH', p, b);
export const del = (p) => api('DELETE', p);
export const seg = encodeURIComponent;

/** POSTs and reads the JSON-lines answer, calling `each` per line, until done or aborted. */
export async function lines(path, body, each, signal) {
  const res = await fetch(`/api/v1${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body), credentials: 'same-origin', signal,
  });
  if (!res.ok) {
    let msg = `${res.status}`;
    try { msg = (await res.json()).error; } catch { /* not JSON */ }
    throw new ApiError(res.status, msg);
  }
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) { try { each(JSON.parse(line)); } catch { /* a bad line is skipped */ } }
    }
  }
}

/** Starts a download; returns once the node has taken it (its progress comes as events). */
export async function fetchContent(id, extra = {}) {
  const ctl = new AbortController();
  let first = null;
  await lines('/downloads', { id, ...extra }, (p) => { first = first || p; ctl.abort(); }, ctl.signal)
    .catch((e) => { if (e.name !== 'AbortError') throw e; });
  return first;
}
