import { h, fill, rate, bytes, copy, table } from '../lib/dom.js';

const HISTORY = 120; // seconds on the graph
const samples = [];

function draw(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth * dpr;
  const hgt = canvas.clientHeight * dpr;
  canvas.width = w; canvas.height = hgt;
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, w, hgt);
  const max = Math.max(1, ...samples.map((s) => Math.max(s.up, s.down)));
  const line = (key, color) => {
    g.strokeStyle = color; g.lineWidth = 2 * dpr; g.beginPath();
    samples.forEach((s, i) => {
      const x = w - (samples.length - 1 - i) * (w / (HISTORY - 1));
      const y = hgt - (s[key] / max) * (hgt - 10 * dpr) - 2 * dpr;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  };
  line('down', '#2a6f9f');
  line('up', '#c0661b');
  g.fillStyle = '#888'; g.font = `${11 * dpr}px system-ui`;
  g.fillText(`${rate(max)} max, last ${HISTORY} s`, 6 * dpr, 14 * dpr);
}

function card(label, value, id) {
  return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value', 'data-k': id }, value));
}

export default {
  id: 'overview',
  title: 'Overview',
  order: 10,
  render(root, { api, events }) {
    const cards = h('div', { class: 'cards' },
      card('Download', '—', 'down'), card('Upload', '—', 'up'), card('Peers', '—', 'peers'),
      card('Connections', '—', 'conns'), card('Shares', '—', 'shares'), card('Downloads', '—', 'downloads'),
      card('Received', '—', 'received'), card('Sent', '—', 'sent'));
    const canvas = h('canvas', { class: 'graph', role: 'img', 'aria-label': 'Upload and download rate' });
    const about = h('div', {});
    fill(root, h('h1', {}, 'Overview'), cards,
      h('h2', {}, 'Traffic'),
      h('p', { class: 'legend' }, h('span', { class: 'down' }, '■ download'), h('span', { class: 'up' }, '■ upload')),
      canvas, about);
    const set = (k, v) => { const el = cards.querySelector(`[data-k="${k}"]`); if (el) el.textContent = v; };
    const onTick = (t) => {
      samples.push({ up: t.up_rate, down: t.down_rate });
      while (samples.length > HISTORY) samples.shift();
      set('down', rate(t.down_rate)); set('up', rate(t.up_rate));
      set('peers', t.peers); set('conns', `${t.direct} direct, ${t.relayed} relayed`);
      set('shares', t.shares); set('downloads', t.downloads.length);
      set('received', bytes(t.received_bytes)); set('sent', bytes(t.sent_bytes));
      draw(canvas);
    };
    if (events.last) onTick(events.last);
    const off = events.on('tick', onTick);
    api.get('/status').then((s) => {
      fill(about,
        h('h2', {}, 'This node'),
        table([['', (r) => r[0]], ['', (r) => r[1]]], [
          ['Peer ID', [h('span', { class: 'mono' }, s.peer_id), ' ', copy(s.peer_id)]],
          ['Version', s.version],
          ['Reachability', `${s.reachability} (DHT ${s.dht})`],
          ['Relay for others', s.relay_server ? 'yes' : 'no'],
          ['Relays used', s.relays.length ? s.relays.map((r) => `${r.peer_id} (${r.state})`).join(', ') : 'none'],
          ['DHT peers known', s.routing_table_peers],
          ['Announcing', `${s.providing} keys`],
        ]),
        h('h2', {}, 'Others can dial this node at'),
        table([['Address', (a) => h('span', { class: 'mono' }, a)], ['', (a) => copy(a)]], s.dialable, 'No addresses yet.'));
    }).catch((e) => fill(about, h('p', { class: 'error' }, e.message)));
    return off;
  },
};
