// One stream of live events from the node (server-sent events). The browser reconnects on
// its own after a drop (a node restart, a sleeping laptop); when the stream is refused
// (logged out, too many tabs) it is opened again with a growing pause.

const handlers = new Map();
const stateHandlers = new Set();
let source = null;
let backoff = 1000;

function setState(s) { for (const f of stateHandlers) f(s); }

function dispatch(name, data) {
  for (const f of handlers.get(name) || []) {
    try { f(data); } catch (e) { console.error(e); }
  }
}

export function connect() {
  if (source) source.close();
  setState('connecting');
  source = new EventSource('/api/v1/events');
  source.onopen = () => { backoff = 1000; setState('live'); dispatch('open', null); };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      setState('reconnecting');
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    } else {
      setState('reconnecting');
    }
  };
  for (const name of ['tick', 'shares', 'transfer', 'log']) {
    source.addEventListener(name, (e) => {
      let data = null;
      try { data = JSON.parse(e.data); } catch { return; }
      dispatch(name, data);
    });
  }
}

/** Calls `f(data)` for each event `name` (`tick`, `shares`, `transfer`, `log`, `open`);
 * returns a function that stops it. */
export function on(name, f) {
  if (!handlers.has(name)) handlers.set(name, new Set());
  handlers.get(name).add(f);
  return () => handlers.get(name).delete(f);
}

/** Calls `f(state)` on `connecting`, `live`, `reconnecting`. */
export function onState(f) { stateHandlers.add(f); }

/** The last tick seen (pages that open later start from it). */
export let last = null;
on('tick', (t) => { last = t; });
