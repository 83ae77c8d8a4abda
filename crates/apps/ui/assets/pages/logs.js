import { h, fill } from '../lib/dom.js';

const KEEP = 1000;
const LEVELS = ['ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE'];

export default {
  id: 'logs',
  title: 'Logs',
  order: 110,
  render(root, { api, events }) {
    const level = h('select', { 'aria-label': 'Least level shown' }, LEVELS.map((l) => h('option', { value: l }, l)));
    level.value = 'INFO';
    const pre = h('pre', { class: 'logs', 'aria-live': 'off' });
    let lines = [];
    const visible = (l) => LEVELS.indexOf(l.level) <= LEVELS.indexOf(level.value);
    const line = (l) => h('div', { class: `lvl-${l.level}` },
      `${new Date(l.time).toLocaleTimeString()} ${l.level.padEnd(5)} ${l.target}: ${l.text}`);
    const redraw = () => fill(pre, lines.filter(visible).map(line));
    level.addEventListener('change', redraw);
    fill(root, h('h1', {}, 'Logs'), h('div', { class: 'row' }, 'Show', level, 'and above'), pre);
    api.get('/logs').then((l) => { lines = l.slice(-KEEP); redraw(); pre.scrollTop = pre.scrollHeight; })
      .catch((e) => fill(pre, h('span', { class: 'error' }, e.message)));
    return events.on('log', (l) => {
      lines.push(l);
      if (lines.length > KEEP) { lines.shift(); pre.firstChild?.remove(); }
      if (!visible(l)) return;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(line(l));
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    });
  },
};
