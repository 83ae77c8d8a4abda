import { h, fill, table, short, copy, form, toast, bytes } from '../lib/dom.js';

export default {
  id: 'groups',
  title: 'Groups',
  order: 70,
  render(root, { api }) {
    const list = h('div', {});
    const detail = h('div', {});
    const showGroup = async (g) => {
      const [members, shares] = await Promise.all([
        api.get(`/groups/${api.seg(g.group)}/members`),
        api.get('/shares'),
      ]);
      const files = shares.filter((s) => s.group === g.group);
      const invite = h('div', {});
      fill(detail, h('h2', {}, `Group ${g.name}`),
        h('p', {}, h('span', { class: 'mono' }, g.group), ' ', copy(g.group, 'copy ID'), ' ',
          h('a', { href: `#/search?group=${encodeURIComponent(g.group)}` }, 'search its files')),
        table([
          ['Person', (m) => h('span', { class: 'mono', title: m.person }, short(m.person, 16))],
          ['Devices', (m) => m.devices.length, 'num'],
          ['Admin', (m) => (m.admin ? 'yes' : '')],
          ['Online', (m) => (m.online ? 'yes' : 'no')],
          ['', (m) => (g.admin ? h('button', { class: 'small danger', type: 'button', onclick: async () => {
            try { await api.del(`/groups/${api.seg(g.group)}/members/${api.seg(m.person)}`); toast('removed; the group key is rotated'); await showGroup(g); }
            catch (e) { toast(e.message, true); }
          } }, 'remove') : '')],
        ], members),
        g.admin ? [h('h2', {}, 'Invite someone'),
          form([['expires', 'valid for (e.g. 24h; default 24h)'], ['uses', 'uses (default 1)', 'number', { min: 1 }]], 'Create invite', async (v) => {
            const secs = v.expires ? parseDuration(v.expires) : undefined;
            const inv = await api.post(`/groups/${api.seg(g.group)}/invites`, { expires_in: secs, uses: v.uses ? Number(v.uses) : undefined });
            fill(invite, h('p', {}, 'Give this token to the person you invite (', h('code', {}, 'kith group join TOKEN'), ' or the Join form):'),
              h('p', { class: 'mono' }, inv.token), copy(inv.token, 'copy invite'));
          }), invite] : null,
        h('h2', {}, 'Shared with this group from here'),
        table([
          ['Name', (s) => [h('strong', {}, s.name), h('div', { class: 'muted mono' }, s.path)]],
          ['Size', (s) => bytes(s.size), 'num'],
          ['ID', (s) => [h('span', { class: 'mono', title: s.id }, short(s.id, 14)), ' ', copy(s.id, 'copy ID')]],
        ], files, 'Nothing shared with this group from this node yet.'),
        h('h2', {}, 'Share with this group'),
        form([['path', '/absolute/path']], 'Share', async (v, f) => {
          const s = await api.post('/shares', { path: v.path, group: g.group });
          toast(`shared ${s.name} with ${g.name}`); f.reset(); await showGroup(g);
        }),
        h('p', {}, h('button', { class: 'danger', type: 'button', onclick: async () => {
          try { await api.post(`/groups/${api.seg(g.group)}/leave`); toast(`left ${g.name}`); fill(detail); await load(); }
          catch (e) { toast(e.message, true); }
        } }, 'Leave this group')));
    };
    const load = async () => {
      const groups = await api.get('/groups');
      fill(list, table([
        ['Name', (g) => h('a', { href: '#/groups', onclick: (e) => { e.preventDefault(); showGroup(g).catch((err) => toast(err.message, true)); } }, g.name)],
        ['Members', (g) => g.members, 'num'],
        ['You are', (g) => (g.admin ? 'admin' : 'member')],
        ['ID', (g) => h('span', { class: 'mono' }, short(g.group, 14))],
      ], groups, 'No groups yet: create one, or join with an invite.'));
    };
    fill(root, h('h1', {}, 'Groups'),
      form([['name', 'new group name']], 'Create', async (v, f) => {
        const g = await api.post('/groups', { name: v.name });
        toast(`created ${g.name}`); f.reset(); await load();
      }),
      form([['token', 'invite token']], 'Join', async (v, f) => {
        const g = await api.post('/groups/join', { token: v.token });
        toast(`joined ${g.name}`); f.reset(); await load();
      }),
      list, detail);
    load().catch((e) => fill(list, h('p', { class: 'error' }, e.message)));
  },
};

function parseDuration(s) {
  const m = /^(\d+)\s*([smhd]?)$/.exec(s.trim());
  if (!m) throw new Error(`valid for: "${s}" is not a duration (e.g. 90m, 24h, 7d)`);
  return Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 })[m[2]];
}
