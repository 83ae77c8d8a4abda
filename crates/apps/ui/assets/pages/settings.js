import { h, fill, rate, toast } from '../lib/dom.js';

export default {
  id: 'settings',
  title: 'Settings',
  order: 100,
  render(root, { api }) {
    const body = h('div', {});
    const load = async () => {
      const s = await api.get('/settings');
      const up = h('input', { name: 'upload_limit', value: String(s.upload_limit), 'aria-label': 'Upload limit' });
      const down = h('input', { name: 'download_limit', value: String(s.download_limit), 'aria-label': 'Download limit' });
      const relay = h('select', { name: 'relay', 'aria-label': 'Relay' },
        h('option', { value: '' }, 'default (only as a broker)'), h('option', { value: 'true' }, 'on'), h('option', { value: 'false' }, 'off'));
      relay.value = s.relay == null ? '' : String(s.relay);
      const broker = h('input', { name: 'broker', value: s.broker || '', placeholder: '/ip4/…/tcp/…/p2p/12D3Koo…', 'aria-label': 'Broker' });
      const row = (label, input, help) => h('tr', {}, h('th', {}, label), h('td', {}, input, h('div', { class: 'muted' }, help)));
      const f = h('form', {},
        h('table', {}, h('tbody', {},
          row('Upload limit', up, `bytes per second, e.g. 10M or 500k; 0 = unlimited (now ${s.upload_limit ? rate(s.upload_limit) : 'unlimited'}); applied at once`),
          row('Download limit', down, `as above (now ${s.download_limit ? rate(s.download_limit) : 'unlimited'}); applied at once`),
          row('Relay for others', relay, 'serve as a circuit relay for peers behind NATs; applied at the next start'),
          row('Broker', broker, 'a broker to register this node\'s catalogue with; empty for none; applied at the next start'))),
        h('p', {}, h('button', { class: 'primary', type: 'submit' }, 'Save')),
        s.on_restart.length ? h('p', { class: 'muted' }, `Saved, applied at the next start: ${s.on_restart.join(', ')}.`) : null);
      f.addEventListener('submit', async (e) => {
        e.preventDefault();
        const change = { upload_limit: up.value.trim() || '0', download_limit: down.value.trim() || '0', broker: broker.value.trim() };
        if (relay.value) change.relay = relay.value === 'true';
        try { await api.put('/settings', change); toast('settings saved'); await load(); }
        catch (err) { toast(err.message, true); }
      });
      fill(body, f);
    };
    fill(root, h('h1', {}, 'Settings'), h('p', { class: 'muted' }, 'Saved in config.toml in the data dir. Flags given to kith up still win at the next start.'), body);
    load().catch((e) => fill(body, h('p', { class: 'error' }, e.message)));
  },
};
