// The demo page in a real browser: a message sent from one page appears in
// another; a page that joins a room with history shows its last 50 messages,
// "load older" puts the earlier ones above, in order and each once, while a
// live message sent during that load lands at the bottom.
//
// Run by run_browser_test.py, which starts the cluster (broker, two gateways
// serving web/, nginx in front) and passes:
//   DEMO_URL        the demo page through nginx, e.g. http://127.0.0.1:PORT/
//   SCREENSHOT_DIR  where the screenshots go
// Debian's chromium, driven by playwright-core over CDP (no browser download).
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.env.DEMO_URL;
const shots = process.env.SCREENSHOT_DIR;
if (!base || !shots) {
  console.error('demo.test.mjs: set DEMO_URL and SCREENSHOT_DIR (run_browser_test.py does)');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const ROOM = 'browser-room';
const HISTORY_ROOM = `browser-history-${Date.now()}`;
const HISTORY_COUNT = 60;
const TEXT = `hello from page one ${Date.now()}`;
const TIMEOUT = 15000;

function check(cond, what) {
  if (!cond) throw new Error(what);
}

const userDataDir = mkdtempSync(join(tmpdir(), 'roomcast-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 900, height: 760 },
});

// the persistent context opens with a blank page: the test makes its own two
for (const page of context.pages()) await page.close();

// Publishes one message through nginx, as a service would; answers its id.
async function publish(room, text) {
  const res = await fetch(new URL('api/v1/events', base), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'message.created', room_id: room, message: { text, author: 'bot' } }),
  });
  const reply = await res.json().catch(() => ({}));
  check(res.ok && typeof reply.id === 'string', `POST ${room} "${text}" -> ${res.status} ${JSON.stringify(reply)}`);
  return reply.id;
}

// What a page shows: [{id, body}] of its events, top to bottom.
const shownEvents = (page) => page.locator('#events li.event').evaluateAll(
  (lis) => lis.map((li) => ({ id: li.dataset.id, body: li.querySelector('.body').textContent })));

const errors = [];
let failed = false;
try {
  const open = async (name, room = ROOM) => {
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`${name} console: ${m.text()}`); });
    const res = await page.goto(`${base}?room=${room}`);
    check(res && res.ok(), `${name}: GET ${base} -> ${res && res.status()}`);
    await page.locator('#state[data-state="open"]').waitFor({ timeout: TIMEOUT });
    check(await page.locator('#current-room').textContent() === room, `${name}: not in ${room}`);
    return page;
  };
  const one = await open('page one');
  const two = await open('page two');
  console.log('both pages connected to', ROOM);

  await one.fill('#author', 'alice');
  await one.fill('#text', TEXT);
  await one.click('#send');
  await one.locator('#send-status', { hasText: 'sent as ' }).waitFor({ timeout: TIMEOUT });
  const sentId = (await one.locator('#send-status').textContent()).replace('sent as ', '').trim();
  console.log('page one sent', sentId);

  const line = `alice: ${TEXT}`;
  await two.locator('#events li .body', { hasText: line }).waitFor({ timeout: TIMEOUT });
  await one.locator('#events li .body', { hasText: line }).waitFor({ timeout: TIMEOUT });
  const shownId = await two.locator('#events li', { hasText: line }).getAttribute('data-id');
  check(shownId === sentId, `page two shows id ${shownId}, page one sent ${sentId}`);
  check((await two.locator('#last-id').textContent()) === sentId, 'page two: last event id is not the message');
  check((await two.locator('#state').textContent()) === 'open', 'page two: connection is not open');
  console.log('page two received', shownId);

  // history: 60 messages before the page joins; it shows the last 50
  const ids = [];
  for (let i = 1; i <= HISTORY_COUNT; i++) ids.push(await publish(HISTORY_ROOM, `history ${i}`));
  const expect = ids.map((id, i) => ({ id, body: `bot: history ${i + 1}` }));
  console.log(`published ${HISTORY_COUNT} messages to ${HISTORY_ROOM}`);
  const three = await open('page three', HISTORY_ROOM);
  await three.waitForFunction((n) => document.querySelectorAll('#events li.event').length >= n, 50,
    { timeout: TIMEOUT });
  let got = await shownEvents(three);
  check(JSON.stringify(got) === JSON.stringify(expect.slice(-50)),
    `page three on join: want history 11-60, shows ${got.length}: ${got.map((e) => e.body).join(', ')}`);
  check(await three.locator('#load-older').isVisible(), 'page three: no "load older" button after the join');
  console.log('page three shows the last 50 on join');

  // "load older", with its answer held until a live message has arrived
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  let asked = null;
  await three.route('**/api/v1/rooms/**', async (route) => {
    asked = route.request().url();
    await held;
    await route.continue();
  });
  await three.click('#load-older');
  await three.waitForFunction(() => document.querySelector('#load-older').disabled, null, { timeout: TIMEOUT });
  check(asked !== null && asked.includes(`before=${encodeURIComponent(ids[10])}`),
    `page three asked ${asked}, not before the oldest shown (${ids[10]})`);
  const liveId = await publish(HISTORY_ROOM, 'live during the load');
  await three.locator('#events li.event:last-child .body', { hasText: 'bot: live during the load' })
    .waitFor({ timeout: TIMEOUT });
  release();
  await three.locator('#older-status', { hasText: 'no older events' }).waitFor({ timeout: TIMEOUT });
  await three.unroute('**/api/v1/rooms/**');
  got = await shownEvents(three);
  const want = [...expect, { id: liveId, body: 'bot: live during the load' }];
  check(JSON.stringify(got) === JSON.stringify(want),
    `page three after "load older": want history 1-60 then the live one, shows ${got.length}: `
    + got.map((e) => e.body).join(', '));
  check(!(await three.locator('#load-older').isVisible()), 'page three: "load older" still shown at the start');
  console.log('page three: load older put 1-10 above, the live message at the bottom, each once');

  await two.screenshot({ path: join(shots, 'demo-page-two.png'), fullPage: true });
  await one.screenshot({ path: join(shots, 'demo-page-one.png'), fullPage: true });
  await three.screenshot({ path: join(shots, 'demo-page-history.png'), fullPage: true });
  console.log('screenshots in', shots);
  check(errors.length === 0, `errors in the pages: ${errors.join('; ')}`);
} catch (e) {
  failed = true;
  console.error('FAIL:', e.message);
  for (const [i, page] of context.pages().entries()) {
    await page.screenshot({ path: join(shots, `failure-page-${i + 1}.png`) }).catch(() => {});
  }
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
console.log(failed ? '0 passed, 1 failed' : '1 passed, 0 failed');
process.exit(failed ? 1 : 0);
