import { h, fill, table, bytes, when, short, form, toast } from '../lib/dom.js';

export default {
  id: 'compute',
  title: 'Cycle sharing',
  order: 80,
  render(root, { api }) {
    const jobs = h('div', {});
    const vol = h('div', {});
    const loadJobs = async () => {
      const list = await api.get('/jobs');
      fill(jobs, table([
        ['Job', (j) => [h('strong', {}, j.name), h('div', { class: 'muted mono' }, short(j.job, 16))]],
        ['State', (j) => j.state],
        ['Units', (j) => [h('progress', { max: j.units || 1, value: j.validated, 'aria-label': 'validated units' }),
          ` ${j.validated}/${j.units} validated`, h('div', { class: 'muted' }, `${j.done} returned, ${j.running} running, ${j.failed} failed`),
          j.on_trust ? h('div', { class: 'muted', title: j.on_trust_units.join(' ') }, `${j.on_trust} on trust (one trusted volunteer's result, unconfirmed)`) : null]],
        ['Quorum', (j) => (j.trust ? `${j.quorum}` : `${j.quorum}, no trust`), 'num'],
        ['Created', (j) => when(j.created)],
        ['', (j) => [j.on_trust ? h('button', { class: 'small', type: 'button', onclick: async () => {
          try { await api.post(`/jobs/${api.seg(j.job)}/accept-trust`, {}); toast('results on trust accepted'); await loadJobs(); } catch (e) { toast(e.message, true); }
        } }, 'accept trust') : null,
        j.state === 'running' ? h('button', { class: 'small danger', type: 'button', onclick: async () => {
          try { await api.del(`/jobs/${api.seg(j.job)}`); toast('cancelled'); await loadJobs(); } catch (e) { toast(e.message, true); }
        } }, 'cancel') : null]],
      ], list, 'No jobs: submit one below.'));
    };
    const loadVol = async () => {
      const v = await api.get('/volunteer');
      fill(vol,
        h('p', {}, v.on ? `Donating ${v.cpus} CPU(s)${v.when_idle ? ' when idle' : ''}, up to ${bytes(v.max_memory)} per unit${v.group ? `, group ${short(v.group, 10)} only` : ''}.` : 'Not donating cycles.',
          v.paused ? ` Paused: ${v.paused}.` : ''),
        h('p', { class: 'muted' }, `${v.completed} units completed, ${v.failed} failed, ${v.held} held; reputation ${v.reputation == null ? '—' : v.reputation.toFixed(2)}`),
        v.on
          ? h('button', { type: 'button', onclick: async () => { try { await api.del('/volunteer'); await loadVol(); } catch (e) { toast(e.message, true); } } }, 'Stop donating')
          : form([['cpus', 'CPUs (default 1)', 'number', { min: 1, max: 64 }], ['when_idle', 'only when idle', 'checkbox']], 'Donate cycles', async (f) => {
            await api.put('/volunteer', { cpus: f.cpus ? Number(f.cpus) : 1, when_idle: !!f.when_idle });
            await loadVol();
          }),
        v.running.length ? [h('h2', {}, 'Running here'), table([
          ['Job', (u) => short(u.job, 12)], ['Unit', (u) => u.unit], ['For', (u) => short(u.master, 12)], ['Seconds', (u) => u.seconds, 'num'],
        ], v.running)] : null,
        v.masters.length ? [h('h2', {}, 'Reputation of job owners'), table([
          ['Owner', (m) => h('span', { class: 'mono' }, short(m.master, 16))], ['Agreed', (m) => m.agreed, 'num'],
          ['Faults', (m) => m.faults, 'num'], ['Reputation', (m) => m.reputation.toFixed(2), 'num'], ['', (m) => (m.dropped ? 'dropped' : '')],
        ], v.masters)] : null);
    };
    fill(root, h('h1', {}, 'Cycle sharing'),
      h('h2', {}, 'Jobs'), jobs,
      form([['spec', '/absolute/path/JOB.toml'], ['group', 'group (optional)']], 'Submit job', async (v, f) => {
        const j = await api.post('/jobs', { spec: v.spec, group: v.group || undefined });
        toast(`submitted ${j.name}`); f.reset(); await loadJobs();
      }),
      h('h2', {}, 'Volunteer'), vol);
    loadJobs().catch((e) => fill(jobs, h('p', { class: 'error' }, e.message)));
    loadVol().catch((e) => fill(vol, h('p', { class: 'error' }, e.message)));
  },
};
