import { h, fill, table, short, copy, form, toast, rate, bytes } from '../lib/dom.js';

export default {
  id: 'peers',
  title: 'Peers',
  order: 20,
  render(root, { api, events }) {
    const list = h('div', {});
    const graph = h('div', {});
    let count = -1;
    let conns = [];
    let rates = new Map();
    const draw = () => {
      const traffic = (c) => rates.get(c.peer_id) || { up_rate: 0, down_rate: 0, sent_bytes: 0, received_bytes: 0 };
      fill(list, table([
        ['Peer', (c) => [h('span', { class: 'mono', title: c.peer_id }, short(c.peer_id, 16)), ' ', copy(c.peer_id)]],
        ['Path', (c) => (c.path === 'relayed' ? `relayed via ${short(c.relay || '?', 12)}` : 'direct')],
        ['Transport', (c) => c.transport],
        ['Opened by', (c) => (c.role === 'dialer' ? 'this node' : 'the peer')],
        ['Address', (c) => h('span', { class: 'mono' }, c.addr)],
        ['Circuit limit', (c) => (c.limit_bytes ? `${c.limit_bytes} B / ${c.limit_secs} s` : '')],
        ['Down', (c) => [rate(traffic(c).down_rate), h('div', { class: 'muted' }, bytes(traffic(c).received_bytes))], 'num'],
        ['Up', (c) => [rate(traffic(c).up_rate), h('div', { class: 'muted' }, bytes(traffic(c).sent_bytes))], 'num'],
      ], conns, 'No peers connected.'));
    };
    const load = async () => {
      conns = await api.get('/peers');
      draw();
      // Who is reached through whom: relays and the peers behind them.
      const byRelay = new Map();
      for (const c of conns.filter((c) => c.path === 'relayed')) {
        const k = c.relay || '?';
        if (!byRelay.has(k)) byRelay.set(k, []);
        byRelay.get(k).push(c.peer_id);
      }
      const direct = [...new Set(conns.filter((c) => c.path !== 'relayed').map((c) => c.peer_id))];
      fill(graph, h('h2', {}, 'How peers are reached'),
        h('ul', {}, h('li', {}, 'this node', h('ul', {},
          direct.map((p) => h('li', { class: 'mono' }, short(p, 20),
            byRelay.has(p) ? h('ul', {}, byRelay.get(p).map((q) => h('li', { class: 'mono' }, `${short(q, 20)} (relayed)`))) : null)),
          [...byRelay.keys()].filter((r) => !direct.includes(r)).map((r) => h('li', { class: 'mono' }, `${short(r, 20)} (relay)`,
            h('ul', {}, byRelay.get(r).map((q) => h('li', { class: 'mono' }, `${short(q, 20)} (relayed)`)))))))));
    };
    fill(root, h('h1', {}, 'Peers'),
      form([['addr', '/ip4/…/tcp/…/p2p/12D3Koo… (a peer to dial now)']], 'Connect', async (v, f) => {
        await api.post('/peers', { addr: v.addr });
        toast('connected'); f.reset(); await load();
      }),
      list, graph);
    load().catch((e) => fill(list, h('p', { class: 'error' }, e.message)));
    // Fetched again when the number of peers changes (the tick says so), not on a timer.
    const fromTick = (t) => { rates = new Map((t.peer_rates || []).map((r) => [r.peer_id, r])); };
    if (events.last) fromTick(events.last);
    return events.on('tick', (t) => {
      fromTick(t);
      if (t.peers !== count) { count = t.peers; load().catch(() => {}); } else draw();
    });
  },
};
