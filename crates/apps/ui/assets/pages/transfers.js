import { h, fill, table, bytes, rate, when, short, copy, form, toast } from '../lib/dom.js';

const pct = (p) => (p.total_bytes ? Math.floor((100 * p.done_bytes) / p.total_bytes) : (p.state === 'done' ? 100 : 0));

function why(p) {
  if (p.error) return p.error;
  if (p.notice) return p.notice;
  if (p.state === 'finding') return 'looking for peers that have it';
  if (p.state === 'waiting') return 'every provider has gone: waiting for one';
  return '';
}

export default {
  id: 'transfers',
  title: 'Transfers',
  order: 40,
  render(root, { api, events }) {
    const running = h('div', {});
    const history = h('div', {});
    const control = (p, what) => async () => {
      try {
        if (what === 'cancel') await api.del(`/downloads/${api.seg(p.id)}`);
        else await api.patch(`/downloads/${api.seg(p.id)}`, { state: what });
        toast(`${what === 'cancel' ? 'cancelled' : what === 'paused' ? 'paused' : 'resumed'} ${p.name || short(p.id)}`);
      } catch (e) { toast(e.message, true); }
    };
    const draw = (downloads) => fill(running, table([
      ['Name', (p) => [h('strong', {}, p.name || short(p.id, 16)), h('div', { class: 'muted mono' }, p.output || '')]],
      ['State', (p) => p.state],
      ['Progress', (p) => [h('progress', { max: 100, value: pct(p), 'aria-label': 'progress' }), ` ${pct(p)} %`,
        h('div', { class: 'muted' }, `${bytes(p.done_bytes)} of ${bytes(p.total_bytes)}`)]],
      ['Rate', (p) => (p.state === 'downloading' ? rate(p.rate) : ''), 'num'],
      ['Providers', (p) => [`${p.providers.length}`, p.relayed.length ? ` (${p.relayed.length} relayed)` : ''], 'num'],
      ['Why it waits', (p) => why(p)],
      ['', (p) => h('span', { class: 'row' },
        p.state === 'paused'
          ? h('button', { class: 'small', type: 'button', onclick: control(p, 'running') }, 'resume')
          : h('button', { class: 'small', type: 'button', onclick: control(p, 'paused') }, 'pause'),
        h('button', { class: 'small danger', type: 'button', onclick: control(p, 'cancel') }, 'cancel'))],
    ], downloads, 'No downloads running.'));
    const loadHistory = async () => {
      const items = await api.get('/downloads/history');
      fill(history, table([
        ['Name', (t) => [h('strong', {}, t.name), h('div', { class: 'muted mono' }, t.output)]],
        ['Result', (t) => (t.state === 'done' ? 'done' : [h('span', { class: 'badge bad' }, 'failed'), ' ', t.error || ''])],
        ['Started', (t) => when(t.added)],
        ['ID', (t) => [h('span', { class: 'mono', title: t.id }, short(t.id, 14)), ' ', copy(t.id, 'copy ID')]],
      ], items, 'No finished downloads yet.'));
    };
    fill(root, h('h1', {}, 'Transfers'),
      form([['id', 'content ID, ticket or PEER_ID/name'], ['output', 'save as (absolute path; default: the data dir\'s downloads folder)']], 'Fetch', async (v, f) => {
        const first = await api.fetchContent(v.id, v.output ? { output: v.output } : {});
        toast(`fetching ${first?.name || short(v.id)}`); f.reset();
      }),
      h('h2', {}, 'Running'), running, h('h2', {}, 'History'), history);
    draw(events.last ? events.last.downloads : []);
    loadHistory().catch((e) => fill(history, h('p', { class: 'error' }, e.message)));
    const offTick = events.on('tick', (t) => draw(t.downloads));
    // A download ended: the running list and the history change now, not at the next tick.
    const offDone = events.on('transfer', () => {
      api.get('/downloads').then(draw).catch(() => {});
      loadHistory().catch(() => {});
    });
    return () => { offTick(); offDone(); };
  },
};
