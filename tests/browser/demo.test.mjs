// The demo page in a real browser: a message sent from one page appears in another.
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

const errors = [];
let failed = false;
try {
  const open = async (name) => {
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`${name} console: ${m.text()}`); });
    const res = await page.goto(`${base}?room=${ROOM}`);
    check(res && res.ok(), `${name}: GET ${base} -> ${res && res.status()}`);
    await page.locator('#state[data-state="open"]').waitFor({ timeout: TIMEOUT });
    check(await page.locator('#current-room').textContent() === ROOM, `${name}: not in ${ROOM}`);
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

  await two.screenshot({ path: join(shots, 'demo-page-two.png'), fullPage: true });
  await one.screenshot({ path: join(shots, 'demo-page-one.png'), fullPage: true });
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
