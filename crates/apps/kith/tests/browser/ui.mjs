// The web UI in a real browser (Debian's Chromium, headless, through playwright-core),
// against two real kith nodes started by tests/webui.rs, which passes everything in the
// environment. Each step prints `step: …`; any failure exits non-zero with the reason.
// Screenshots of every page go to $SHOTS (not committed).

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const env = process.env;
const need = (k) => env[k] || (() => { throw new Error(`missing ${k}`); })();
const A_BASE = need('A_BASE');
const B_BASE = need('B_BASE');
const SHOTS = need('SHOTS');
const XSS = '<img src=x onerror=alert(1)>';
const WAIT = 60_000;

const step = (s) => console.log(`step: ${s}`);
const check = (ok, what) => { if (!ok) throw new Error(`failed: ${what}`); };
const dialogs = [];
const pageErrors = [];
const restarted = [];

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

async function context() {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write']);
  return ctx;
}

function watch(page) {
  // An XSS payload that ran would open a dialog; the UI itself opens none in these steps.
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.setDefaultTimeout(WAIT);
}

async function login(url, base) {
  const ctx = await context();
  const page = await ctx.newPage();
  watch(page);
  await page.goto(url);
  await page.waitForSelector('#conn[data-state="live"]');
  check(page.url() === `${base}/`, `the login code leaves the address bar (at ${page.url()})`);
  const cookie = (await ctx.cookies()).find((c) => c.name === 'kith_token');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', 'the token is an HttpOnly, SameSite=Strict cookie');
  return { ctx, page };
}

async function go(page, id) {
  await page.click(`nav a[data-page="${id}"]`);
  await page.waitForSelector(`main [data-page="${id}"] h1`);
}

async function shootAll(page, prefix) {
  const ids = await page.$$eval('nav a', (as) => as.map((a) => a.dataset.page));
  const listed = await page.evaluate(async () => (await (await fetch('/ui/pages.json')).json()).length);
  check(ids.length === listed && ids.length >= 11, `every page loaded into the navigation (${ids.join(', ')})`);
  for (const id of ids) {
    await go(page, id);
    // Pages draw from their first API answers; give them those.
    await page.waitForLoadState('networkidle').catch(() => {});
    await page.screenshot({ path: `${SHOTS}/${prefix}-${id}.png`, fullPage: true });
    check(await page.locator('main .error').count() === 0, `page ${id} shows no error`);
  }
  return ids;
}

async function share(page, path, name) {
  await go(page, 'files');
  await page.fill('main input[name="path"]', path);
  await page.click('main form button[type="submit"]');
  await page.locator('main table strong', { hasText: name }).first().waitFor();
}

async function searchUntilFound(page, query, name) {
  await go(page, 'search');
  const deadline = Date.now() + WAIT;
  for (;;) {
    await page.fill('main input[name="q"]', query);
    await page.click('main form button[type="submit"]');
    const row = page.locator('main tbody tr', { has: page.locator('strong', { hasText: name }) }).first();
    try {
      await row.waitFor({ timeout: 7000 });
      return row;
    } catch {
      check(Date.now() < deadline, `"${query}" finds ${name} within ${WAIT / 1000} s`);
    }
  }
}

async function api(ctx, base, method, path, data, headers = {}) {
  return ctx.request.fetch(`${base}/api/v1${path}`, { method, data, headers, failOnStatusCode: false });
}

async function waitGone(pid) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    // Gone, or a zombie its parent (the test) has not reaped yet.
    let stat = '';
    try { stat = readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return; }
    if (/\) Z /.test(stat)) return;
    check(Date.now() < deadline, `node ${pid} stops on SIGTERM`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

try {
  step('a login link works once and leaves no token in the address bar');
  const a = await login(need('A_LOGIN'), A_BASE);
  const again = await (await context()).newPage();
  const resp = await again.goto(need('A_LOGIN'));
  check(resp.status() === 403, 'a spent login link is refused');
  await again.goto(`${A_BASE}/`);
  await again.getByText('Log in to this kith node').waitFor();

  step('share a folder and a file with a hostile name on A, in A\'s UI');
  await share(a.page, need('SHARE_DIR'), need('SHARE_NAME'));
  await share(a.page, need('XSS_FILE'), XSS);
  await a.page.getByText(XSS, { exact: true }).first().waitFor();
  check(await a.page.locator('main img').count() === 0, 'the hostile file name renders as text, not as an element');

  step('copy an ID');
  const row = a.page.locator('main tbody tr', { has: a.page.locator('strong', { hasText: need('SHARE_NAME') }) }).first();
  const shownId = await row.locator('span.mono[title]').getAttribute('title');
  await row.getByRole('button', { name: 'copy ID' }).click();
  const copied = await a.page.evaluate(() => navigator.clipboard.readText());
  check(copied === shownId && copied.length > 20, `the ID is copied (${copied})`);

  step('a group in A\'s UI: create, invite, share with it');
  await go(a.page, 'groups');
  await a.page.fill('main input[name="name"]', 'family');
  await a.page.locator('main form', { has: a.page.locator('input[name="name"]') }).getByRole('button').click();
  await a.page.locator('main table a', { hasText: 'family' }).click();
  await a.page.getByRole('heading', { name: 'Group family' }).waitFor();
  await a.page.getByRole('button', { name: 'Create invite' }).click();
  await a.page.getByRole('button', { name: 'copy invite' }).waitFor();
  const invite = await a.page.locator('main p.mono').last().innerText();
  check(invite.length > 40, `an invite token is shown (${invite.length} characters)`);
  const groupForm = a.page.locator('main form', { has: a.page.getByPlaceholder('/absolute/path') });
  await groupForm.locator('input').fill(need('GROUP_FILE'));
  await groupForm.getByRole('button').click();
  await a.page.locator('main table strong', { hasText: 'family-notes.txt' }).waitFor();
  await a.page.screenshot({ path: `${SHOTS}/a-group.png`, fullPage: true });

  step('screenshots of every page of A');
  await shootAll(a.page, 'a');

  step('change a rate limit in B\'s settings');
  const b = await login(need('B_LOGIN'), B_BASE);
  await go(b.page, 'settings');
  await b.page.fill('main input[name="download_limit"]', '2M');
  await b.page.click('main button[type="submit"]');
  await b.page.getByText('settings saved').waitFor();
  const settings = await (await api(b.ctx, B_BASE, 'GET', '/settings')).json();
  check(settings.download_limit === 2_000_000, `the limit is applied (${JSON.stringify(settings)})`);

  step('find the hostile name in B\'s search: text, not markup');
  await searchUntilFound(b.page, 'onerror', XSS);
  check(await b.page.locator('main img').count() === 0, 'search results escape peer-supplied names');

  step('find A\'s file in B\'s search, fetch it with one click, watch progress reach 100 %');
  const found = await searchUntilFound(b.page, need('QUERY'), need('FILE_NAME'));
  await found.getByRole('button', { name: 'fetch' }).click();
  await go(b.page, 'transfers');
  const running = b.page.locator('main tbody tr', { has: b.page.locator('strong', { hasText: need('FILE_NAME') }) }).first();
  await running.waitFor();
  const seen = new Set();
  const deadline = Date.now() + WAIT;
  for (;;) {
    const v = await running.locator('progress').getAttribute('value', { timeout: 1000 }).catch(() => null);
    if (v !== null) seen.add(Number(v));
    const done = await b.page.locator('main tbody tr', { hasText: need('FILE_NAME') }).filter({ hasText: 'done' }).count();
    if (done > 0) break;
    check(Date.now() < deadline, 'the download ends in the history as done');
    await b.page.waitForTimeout(100);
  }
  check([...seen].some((v) => v > 0 && v < 100), `progress was seen between 0 and 100 % (${[...seen].join(', ')})`);
  await b.page.screenshot({ path: `${SHOTS}/b-transfers-done.png`, fullPage: true });

  step('cancel a second transfer');
  await b.page.fill('main input[name="id"]', need('BIG_ID'));
  await b.page.click('main form button[type="submit"]');
  const big = b.page.locator('main tbody tr', { has: b.page.locator('strong', { hasText: need('BIG_NAME') }) }).first();
  await big.getByRole('button', { name: 'cancel' }).click();
  await b.page.getByText(/^cancelled/).waitFor();
  await big.waitFor({ state: 'detached' });
  const left = await (await api(b.ctx, B_BASE, 'GET', '/downloads')).json();
  check(!left.some((d) => d.id === need('BIG_ID')), 'the cancelled download is gone from the node');

  step('a request from another site is refused');
  const evil = await api(b.ctx, B_BASE, 'PUT', '/settings', { upload_limit: '1' }, { Origin: 'http://evil.example' });
  check(evil.status() === 403, `foreign Origin gets 403 (got ${evil.status()})`);
  const after = await (await api(b.ctx, B_BASE, 'GET', '/settings')).json();
  check(after.upload_limit !== 1, 'and changed nothing');
  const noCookie = await browser.newContext();
  const anon = await noCookie.request.get(`${B_BASE}/api/v1/status`, { failOnStatusCode: false });
  check(anon.status() === 401, 'without the cookie the API says 401');

  step('two tabs at once');
  const second = await b.ctx.newPage();
  watch(second);
  await second.goto(`${B_BASE}/#/overview`);
  await second.waitForSelector('#conn[data-state="live"]');
  await b.page.waitForSelector('#conn[data-state="live"]');
  await go(b.page, 'peers');
  await b.page.locator('main tbody td.num div', { hasText: / MB$/ }).first().waitFor();
  await shootAll(b.page, 'b');

  step('10,000 shares and 1,000 search results stay fast (synthetic answers, the real page)');
  const perf = await a.ctx.newPage();
  watch(perf);
  const id = (i) => `bagaaihra${String(i).padStart(50, '0')}`;
  const shares = Array.from({ length: 10_000 }, (_, i) => ({
    id: id(i), path: `/data/library/book-${i}.pdf`, name: `book-${i}.pdf`, kind: 'file', size: 1000 + i, files: 1, added: 1_700_000_000 + i,
  }));
  await perf.route('**/api/v1/shares', (r) => r.fulfill({ json: shares }));
  const results = Array.from({ length: 1000 }, (_, i) => JSON.stringify({
    id: id(i), name: `song ${i}.ogg`, path: `music/song ${i}.ogg`, size: 5_000_000, kind: 'file', providers: ['12D3KooWA'], score: 1 + (i % 7),
  })).join('\n') + '\n';
  await perf.route('**/api/v1/search', (r) => r.fulfill({ body: results, contentType: 'application/x-ndjson' }));
  await perf.goto(`${A_BASE}/#/overview`);
  await perf.waitForSelector('#conn[data-state="live"]');
  let t0 = Date.now();
  await go(perf, 'files');
  await perf.getByText('10000 of 10000 shares').waitFor();
  const filesMs = Date.now() - t0;
  t0 = Date.now();
  await perf.fill('main input[type="search"]', 'book-9999');
  await perf.getByText('1 of 10000 shares').waitFor();
  const filterMs = Date.now() - t0;
  await go(perf, 'search');
  t0 = Date.now();
  await perf.fill('main input[name="q"]', 'song');
  await perf.click('main form button[type="submit"]');
  await perf.getByText(/^1000 results in/).waitFor();
  await perf.waitForFunction(() => document.querySelectorAll('main tbody tr').length === 1000);
  const searchMs = Date.now() - t0;
  // Baseline, same run: the browser drawing a plain static table of the same 10,000 rows.
  const esc = (x) => String(x).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const rows = shares.map((r) => `<tr><td>${esc(r.name)}<div>${esc(r.path)}</div></td><td>file</td><td>${r.size}</td><td>${r.added}</td><td>${esc(r.id)}</td></tr>`).join('');
  const plain = await browser.newPage();
  t0 = Date.now();
  await plain.setContent(`<table>${rows}</table>`);
  await plain.evaluate(() => document.body.getBoundingClientRect());
  const plainMs = Date.now() - t0;
  await plain.close();
  console.log(`figure: files page with 10000 shares drawn in ${filesMs} ms (a static 10000-row table: ${plainMs} ms); filter in ${filterMs} ms; 1000 search results streamed and drawn in ${searchMs} ms`);
  check(filesMs < 3000 && filterMs < 2000 && searchMs < 4000, 'the pages stay fast');
  await perf.close();

  step('the node restarts under an open page: "reconnecting", then live again');
  await go(a.page, 'overview');
  const pid = Number(need('A_PID'));
  process.kill(pid, 'SIGTERM');
  await a.page.waitForSelector('#conn[data-state="reconnecting"]');
  await waitGone(pid);
  const child = spawn(need('KITH'), JSON.parse(need('A_ARGS')), { stdio: 'ignore' });
  restarted.push(child);
  writeFileSync(need('A_PIDFILE'), String(child.pid));
  await a.page.waitForSelector('#conn[data-state="live"]', { timeout: WAIT });
  await a.page.locator('main .mono', { hasText: need('A_PEER') }).first().waitFor();

  step('log out');
  await b.page.getByRole('button', { name: 'log out' }).click();
  await b.page.getByText('Log in to this kith node').waitFor();
  check(!(await b.ctx.cookies()).some((c) => c.name === 'kith_token' && c.value), 'the cookie is gone');

  check(dialogs.length === 0, `no dialog opened (${dialogs.join(' | ')})`);
  check(await a.page.locator('.toast.error').count() === 0, 'no error notice on A');
  check(pageErrors.length === 0, `no script error (${pageErrors.join(' | ')})`);
  console.log('ALL OK');
} catch (e) {
  console.error(`error: ${e.message}`);
  process.exitCode = 1;
} finally {
  for (const c of restarted) c.kill('SIGTERM');
  await browser.close();
}
