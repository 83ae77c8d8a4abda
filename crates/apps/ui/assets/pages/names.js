import { h, fill, table, when, short, copy, form, toast } from '../lib/dom.js';

export default {
  id: 'names',
  title: 'Names',
  order: 60,
  render(root, { api }) {
    const list = h('div', {});
    const resolved = h('div', {});
    const load = async () => {
      const names = await api.get('/names');
      fill(list, table([
        ['Name', (n) => [h('strong', { class: 'mono' }, n.name), ' ', copy(n.name)]],
        ['Revision', (n) => n.revision, 'num'],
        ['Published', (n) => when(n.time)],
        ['Content', (n) => [h('span', { class: 'mono', title: n.id }, short(n.id, 14)), ' ', copy(n.id, 'copy ID')]],
        ['', (n) => h('button', { class: 'small', type: 'button', onclick: async () => {
          try { await api.fetchContent(n.name); toast(`fetching ${n.name}: see Transfers`); } catch (e) { toast(e.message, true); }
        } }, 'fetch newest')],
      ], names, 'No names yet: publish one above, or resolve another node\'s.'));
    };
    fill(root, h('h1', {}, 'Names'),
      h('p', { class: 'muted' }, 'A name (PEER_ID/name) points to the newest revision of a file or folder; publishing again makes a new revision.'),
      h('h2', {}, 'Publish'),
      form([['name', 'name (letters, digits, - _ .)'], ['path', '/absolute/path to share as its next revision']], 'Publish', async (v, f) => {
        const n = await api.post('/names', { name: v.name, path: v.path });
        toast(`published ${n.name} revision ${n.revision}`); f.reset(); await load();
      }),
      h('h2', {}, 'Resolve'),
      form([['name', 'PEER_ID/name']], 'Resolve', async (v) => {
        const n = await api.post('/names/resolve', { name: v.name });
        fill(resolved, h('p', {}, h('span', { class: 'mono' }, n.name), ` is at revision ${n.revision} (${when(n.time)}): `,
          h('span', { class: 'mono' }, n.id), ' ', copy(n.id, 'copy ID')));
        await load();
      }),
      resolved,
      h('h2', {}, 'Known names'), h('p', { class: 'muted' }, 'Yours, and those this node resolved: it is subscribed to them, and new revisions arrive as they are published.'), list);
    load().catch((e) => fill(list, h('p', { class: 'error' }, e.message)));
  },
};
