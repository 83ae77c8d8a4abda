import { h, fill, table, bytes, short, form, toast } from '../lib/dom.js';

export default {
  id: 'cache',
  title: 'Cache',
  order: 95,
  render(root, { api }) {
    const body = h('div', {});
    const load = async () => {
      const c = await api.get('/cache');
      fill(body,
        h('p', {}, c.capacity ? `${bytes(c.used)} of ${bytes(c.capacity)} used (${bytes(c.pinned_bytes)} pinned) for readers in ${c.regions.join(', ') || 'this region'}.` : 'This node caches nothing for others (start it with --cache SIZE).'),
        table([
          ['Content', (e) => [h('strong', {}, e.name || short(e.id, 16)), e.pinned ? h('span', { class: 'badge' }, 'pinned') : null]],
          ['State', (e) => (e.error ? `${e.state}: ${e.error}` : e.state)],
          ['Why', (e) => e.why],
          ['Size', (e) => bytes(e.bytes), 'num'],
          ['Served', (e) => e.served, 'num'],
          ['', (e) => (e.pinned ? h('button', { class: 'small', type: 'button', onclick: async () => {
            try { await api.del(`/cache/pins/${api.seg(e.id)}`); await load(); } catch (err) { toast(err.message, true); }
          } }, 'unpin') : '')],
        ], c.entries, 'Nothing cached.'));
    };
    fill(root, h('h1', {}, 'Cache'),
      form([['id', 'content ID to keep here (pin)']], 'Pin', async (v, f) => {
        await api.post('/cache/pins', { id: v.id }); toast('pinned'); f.reset(); await load();
      }), body);
    load().catch((e) => fill(body, h('p', { class: 'error' }, e.message)));
  },
};
