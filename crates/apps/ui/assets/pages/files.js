import { h, fill, table, bytes, when, short, copy, form, toast } from '../lib/dom.js';

const PAGE = 200; // rows drawn at once; "show more" draws the next ones

export default {
  id: 'files',
  title: 'Files',
  order: 30,
  render(root, { api, events }) {
    let shares = [];
    let shown = PAGE;
    const filter = h('input', { type: 'search', placeholder: 'Filter by name or path', 'aria-label': 'Filter' });
    const list = h('div', {});
    const draw = () => {
      const q = filter.value.trim().toLowerCase();
      const rows = q ? shares.filter((s) => `${s.name} ${s.path}`.toLowerCase().includes(q)) : shares;
      fill(list,
        h('p', { class: 'muted' }, `${rows.length} of ${shares.length} shares`),
        table([
          ['Name', (s) => [h('strong', {}, s.name), s.group ? h('span', { class: 'badge' }, `group ${short(s.group, 8)}`) : null,
            h('div', { class: 'muted mono' }, s.path)]],
          ['Kind', (s) => (s.kind === 'dir' ? `folder, ${s.files} files` : 'file')],
          ['Size', (s) => bytes(s.size), 'num'],
          ['Added', (s) => when(s.added)],
          ['ID', (s) => [h('span', { class: 'mono', title: s.id }, short(s.id, 14)), ' ', copy(s.id, 'copy ID')]],
          ['', (s) => h('span', { class: 'row' },
            h('button', { class: 'small', type: 'button', onclick: async (e) => {
              try { const t = await api.get(`/shares/${api.seg(s.id)}/ticket`); await navigator.clipboard.writeText(t.ticket).catch(() => window.prompt('Ticket:', t.ticket)); e.target.textContent = 'ticket copied'; }
              catch (err) { toast(err.message, true); }
            } }, 'copy ticket'),
            s.kind === 'file' ? h('a', { href: `/content/${encodeURIComponent(s.id)}`, target: '_blank', rel: 'noopener' }, 'open') : null,
            h('button', { class: 'small danger', type: 'button', onclick: async () => {
              try { await api.del(`/shares/${api.seg(s.id)}`); toast(`no longer sharing ${s.name}`); await load(); }
              catch (err) { toast(err.message, true); }
            } }, 'unshare'))],
        ], rows.slice(0, shown), 'Nothing shared yet: add a file or folder above.'),
        rows.length > shown ? h('button', { type: 'button', onclick: () => { shown += PAGE; draw(); } }, `show ${Math.min(PAGE, rows.length - shown)} more`) : null);
    };
    const load = async () => { shares = await api.get('/shares'); draw(); };
    filter.addEventListener('input', () => { shown = PAGE; draw(); });
    fill(root, h('h1', {}, 'Files'),
      h('h2', {}, 'Share a file or folder'),
      form([['path', '/absolute/path/on/this/machine'], ['group', 'group (optional)']], 'Share', async (v, f) => {
        const s = await api.post('/shares', { path: v.path, group: v.group || undefined });
        toast(`shared ${s.name}`); f.reset(); await load();
      }),
      h('h2', {}, 'Shared'), h('div', { class: 'row' }, filter), list);
    load().catch((e) => fill(list, h('p', { class: 'error' }, e.message)));
    return events.on('shares', () => load().catch(() => {}));
  },
};
