import { h, fill, table, bytes, when, short, form, toast } from '../lib/dom.js';

export default {
  id: 'vault',
  title: 'Vault',
  order: 90,
  render(root, { api }) {
    const overview = h('div', {});
    const objects = h('div', {});
    const load = async () => {
      const [o, list] = await Promise.all([api.get('/vault/status'), api.get('/vault')]);
      fill(overview, h('div', { class: 'cards' }, [
        ['Offered to others', bytes(o.offered)], ['Held for others', bytes(o.held)], ['Objects', o.objects],
        ['Stored', bytes(o.stored)], ['Repairs', o.repairs], ['Last audit', when(o.last_audit)],
      ].map(([l, v]) => h('div', { class: 'card' }, h('div', { class: 'label' }, l), h('div', { class: 'value' }, v)))),
      o.peers.length ? [h('h2', {}, 'Holders'), table([
        ['Peer', (p) => h('span', { class: 'mono' }, short(p.peer, 16))], ['Holds for me', (p) => bytes(p.holds_for_me), 'num'],
        ['I hold for it', (p) => bytes(p.i_hold_for_it), 'num'], ['Audits passed', (p) => p.audits_passed, 'num'], ['Faults', (p) => p.faults, 'num'],
      ], o.peers)] : null);
      fill(objects, table([
        ['Name', (v) => [h('strong', {}, v.name), h('span', { class: 'badge' }, v.kind)]],
        ['Health', (v) => h('span', { class: v.reachable >= v.n ? 'badge new' : v.reachable >= v.k ? 'badge' : 'badge bad' }, `${v.reachable}/${v.n}`)],
        ['Size', (v) => bytes(v.size), 'num'],
        ['Code', (v) => `${v.k} of ${v.n}`],
        ['Repairs', (v) => v.repairs, 'num'],
        ['Last audit', (v) => when(v.last_audit)],
        ['', (v) => h('span', { class: 'row' },
          h('button', { class: 'small', type: 'button', onclick: async () => {
            const out = window.prompt('Restore to (absolute path that does not exist yet):');
            if (!out) return;
            try { const g = await api.post(`/vault/${api.seg(v.id)}/get`, { out }); toast(`restored ${g.files} files, ${bytes(g.bytes)}`); }
            catch (e) { toast(e.message, true); }
          } }, 'restore'),
          h('button', { class: 'small danger', type: 'button', onclick: async () => {
            try { await api.del(`/vault/${api.seg(v.id)}`); toast(`removed ${v.name}`); await load(); } catch (e) { toast(e.message, true); }
          } }, 'remove'))],
      ], list, 'The vault is empty: store a file or folder above.'));
    };
    fill(root, h('h1', {}, 'Vault'), overview,
      h('h2', {}, 'Store redundantly'),
      form([['path', '/absolute/path'], ['k', 'k (default 3)', 'number', { min: 1 }], ['n', 'n (default 5)', 'number', { min: 1 }]], 'Store', async (v, f) => {
        const s = await api.post('/vault', { path: v.path, k: v.k ? Number(v.k) : undefined, n: v.n ? Number(v.n) : undefined });
        const later = s.index_published ? '' : '; the index copy other devices read is stored later';
        toast(`stored ${s.name} on ${s.holders} holders${later}`); f.reset(); await load();
      }),
      h('h2', {}, 'Back up a folder'),
      form([['dir', '/absolute/folder'], ['every', 'every (seconds, optional)', 'number', { min: 60 }]], 'Back up', async (v, f) => {
        await api.post('/backups', { dir: v.dir, every: v.every ? Number(v.every) : undefined });
        toast('backed up'); f.reset(); await load();
      }),
      h('h2', {}, 'Objects'), objects);
    load().catch((e) => fill(objects, h('p', { class: 'error' }, e.message)));
  },
};
