// The shell: loads every page module the node lists, draws the navigation, routes by the
// URL's hash and keeps one live event stream. A page is a module in /ui/pages/ exporting
// default { id, title, order, render(root, ctx) } — render may return a cleanup function.

import { h, fill, toast } from './lib/dom.js';
import * as api from './lib/api.js';
import * as events from './lib/events.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const conn = document.getElementById('conn');
let pages = [];
let cleanup = null;

function showState(state) {
  conn.dataset.state = state;
  conn.textContent = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', login: 'not logged in' }[state] || state;
}

function loginPage(message) {
  showState('login');
  fill(nav);
  fill(main, h('section', { class: 'login' },
    h('h1', {}, 'Log in to this kith node'),
    h('p', {}, message),
    h('p', {}, 'On the machine that runs the node, run ', h('code', {}, 'kith ui'),
      ': it prints a link that logs this browser in (once, within two minutes).')));
}

function route() {
  const id = (location.hash.replace(/^#\/?/, '') || 'overview').split('?')[0];
  const page = pages.find((p) => p.id === id) || pages[0];
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.page === page.id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (typeof cleanup === 'function') cleanup();
  cleanup = null;
  const root = h('div', { 'data-page': page.id });
  fill(main, root);
  document.title = `${page.title} · kith`;
  try {
    cleanup = page.render(root, { api, events, params: new URLSearchParams(location.hash.split('?')[1] || '') });
  } catch (e) {
    fill(root, h('p', { class: 'error' }, `This page failed: ${e.message}`));
  }
}

async function start() {
  let status;
  try {
    status = await api.get('/status');
  } catch (e) {
    if (e.status === 401) return loginPage('This browser is not logged in.');
    fill(main, h('p', { class: 'error' }, `The node does not answer: ${e.message}`));
    setTimeout(start, 3000);
    return;
  }
  document.getElementById('peer').textContent = status.peer_id;
  const list = await (await fetch('/ui/pages.json')).json();
  const mods = await Promise.all(list.map((p) => import(`/ui/${p}`).then((m) => m.default).catch((e) => {
    toast(`page ${p} did not load: ${e.message}`, true);
    return null;
  })));
  pages = mods.filter(Boolean).sort((a, b) => a.order - b.order);
  fill(nav, pages.map((p) => h('a', { href: `#/${p.id}`, 'data-page': p.id }, p.title)));
  let wasDown = false;
  events.onState((s) => {
    showState(s);
    // After a drop the page may be stale: draw it again from fresh data.
    if (s === 'live' && wasDown) route();
    wasDown = s !== 'live';
  });
  events.connect();
  window.addEventListener('hashchange', route);
  route();
}

start();
