import { h, fill, table, bytes, short, copy, toast } from '../lib/dom.js';

const SHOWN = 1000;
const rank = (r) => r.score * (1 + Math.log(Math.max(1, r.providers.length)));

export default {
  id: 'search',
  title: 'Search',
  order: 50,
  render(root, { api, params }) {
    const q = h('input', { type: 'search', name: 'q', placeholder: 'words, "a phrase", prefix*', 'aria-label': 'Search', value: params.get('q') || '' });
    const via = h('select', { 'aria-label': 'Where to search' },
      ['', 'network', 'index', 'broker', 'both', 'flood'].map((v) => h('option', { value: v }, v || 'default')));
    const group = h('input', { name: 'group', placeholder: 'group (optional)', 'aria-label': 'Group', value: params.get('group') || '' });
    const status = h('p', { class: 'muted' });
    const results = h('div', {});
    let ctl = null;
    const byId = new Map();
    let pending = false;
    const draw = () => {
      pending = false;
      const rows = [...byId.values()].sort((a, b) => (!!a.outdated - !!b.outdated) || rank(b) - rank(a)).slice(0, SHOWN);
      fill(results, table([
        ['Name', (r) => [h('strong', {}, r.name),
          r.name_key ? h('span', { class: r.outdated ? 'badge old' : 'badge new' }, r.outdated ? `old revision ${r.revision}` : `newest revision ${r.revision ?? ''}`) : null,
          h('div', { class: 'muted' }, r.path)]],
        ['Size', (r) => bytes(r.size), 'num'],
        ['Kind', (r) => (r.kind === 'dir' ? 'folder' : 'file')],
        ['Peers', (r) => r.providers.length, 'num'],
        ['ID', (r) => [h('span', { class: 'mono', title: r.id }, short(r.id, 14)), ' ', copy(r.id, 'copy')]],
        ['', (r) => h('button', { class: 'small primary', type: 'button', onclick: async (e) => {
          try {
            const p = await api.fetchContent(r.id);
            e.target.textContent = 'fetching';
            toast(`fetching ${r.name} into ${p?.output || 'downloads'}: see Transfers`);
          } catch (err) { toast(err.message, true); }
        } }, 'fetch')],
      ], rows, ''));
    };
    const go = async (e) => {
      e?.preventDefault();
      if (ctl) ctl.abort();
      ctl = new AbortController();
      byId.clear(); fill(results);
      const text = q.value.trim();
      if (!text) return;
      status.textContent = 'searching…';
      const started = performance.now();
      try {
        await api.lines('/search', { q: text, via: via.value || undefined, group: group.value || undefined, limit: SHOWN }, (r) => {
          byId.set(r.id, r);
          status.textContent = `${byId.size} results so far…`;
          // Results arrive in bursts: draw at most once a frame.
          if (!pending) { pending = true; requestAnimationFrame(draw); }
        }, ctl.signal);
        status.textContent = `${byId.size} results in ${((performance.now() - started) / 1000).toFixed(1)} s`;
        draw();
      } catch (err) {
        if (err.name !== 'AbortError') { status.textContent = ''; toast(err.message, true); }
      }
    };
    const f = h('form', { class: 'row', onsubmit: go }, q, via, group, h('button', { class: 'primary', type: 'submit' }, 'Search'));
    fill(root, h('h1', {}, 'Search'), f, status, results);
    if (q.value) go();
    return () => ctl?.abort();
  },
};
