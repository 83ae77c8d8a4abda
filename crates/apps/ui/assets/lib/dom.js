// Building the DOM from data. Every string becomes a text node: nothing a peer sends is
// ever parsed as HTML.

/** An element: h('td', { class: 'num', onclick: fn }, 'text', child, [more]). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];
export function bytes(n) {
  n = Number(n) || 0;
  let i = 0;
  while (n >= 1000 && i < UNITS.length - 1) { n /= 1000; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${UNITS[i]}`;
}
export const rate = (n) => `${bytes(n)}/s`;
export const when = (secs) => (secs ? new Date(secs * 1000).toLocaleString() : '—');
export const short = (id, n = 12) => (id && id.length > n + 3 ? `${id.slice(0, n)}…` : id || '');

/** A table: columns are [title, (row) => cell, cls?]. */
export function table(columns, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('table', {},
    h('thead', {}, h('tr', {}, columns.map(([t, , cls]) => h('th', { class: cls }, t)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map(([, f, cls]) => h('td', { class: cls }, f(r)))))));
}

/** A button that copies `text`. */
export function copy(text, label = 'copy') {
  return h('button', {
    class: 'small', type: 'button', title: 'Copy to the clipboard',
    onclick: async (e) => {
      try { await navigator.clipboard.writeText(text); e.target.textContent = 'copied'; }
      catch { window.prompt('Copy this:', text); }
    },
  }, label);
}

/** A one-line notice at the bottom right. */
export function toast(text, error = false) {
  const t = h('div', { class: error ? 'toast error' : 'toast' }, text);
  document.getElementById('toasts')?.append(t);
  setTimeout(() => t.remove(), error ? 8000 : 4000);
}

/** A form row: inputs, and a submit button that runs `go(values)`, reporting errors. */
export function form(fields, label, go) {
  const inputs = fields.map(([name, placeholder, type = 'text', extra = {}]) =>
    h('input', { name, placeholder, type, 'aria-label': placeholder, ...extra }));
  const f = h('form', { class: 'row' }, inputs, h('button', { class: 'primary', type: 'submit' }, label));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    const values = Object.fromEntries(inputs.map((i) => [i.name, i.type === 'checkbox' ? i.checked : i.value.trim()]));
    // Nothing can be typed or sent again until the node has answered.
    const controls = [...f.elements];
    for (const c of controls) c.disabled = true;
    try { await go(values, f); } catch (err) { toast(err.message, true); }
    finally { for (const c of controls) c.disabled = false; }
  });
  return f;
}
