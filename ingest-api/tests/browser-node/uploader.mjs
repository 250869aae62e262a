// The web uploader page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), against the stack started by ingest-api/tests/browser.rs:
//
// 1. files the tenant's policy refuses (wrong type, too large) get a message and cause no upload
//    request;
// 2. a noisy PNG of 3 parts is uploaded 2 parts at a time, with the storage PUTs slowed down;
//    the page is reloaded once 2 parts are confirmed, the same file is picked again, and the
//    upload finishes: no part confirmed before the reload is sent to storage again;
// 3. the page follows the upload on the bridge's SSE stream until UploadReady and shows the
//    thumbnail variant (loaded from storage).
//
// Environment: BASE (page origin), TOKEN (browser token), WORK (scratch directory),
// SCREENSHOT (where to save the finished page), CHROMIUM (default /usr/bin/chromium).
// Prints one JSON line of results; exits non-zero with a message on any failed check.

import { chromium } from 'playwright-core';
import { writeFileSync, truncateSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { noisyPng } from './png.mjs';

const { BASE, TOKEN, WORK, SCREENSHOT } = process.env;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MiB = 1024 * 1024;

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const photo = join(WORK, 'noisy-photo.png');
writeFileSync(photo, noisyPng(3000, 2600));
const photoSize = statSync(photo).size;
const partCount = Math.ceil(photoSize / (8 * MiB));
check(partCount === 3, `the test image has 3 parts of 8 MiB (size ${photoSize})`);
const text = join(WORK, 'notes.txt');
writeFileSync(text, 'not an image\n');
const huge = join(WORK, 'huge.png');
writeFileSync(huge, '');
truncateSync(huge, 41 * MiB); // sparse; over the tenant's 40 MiB limit

// ---------- the browser ----------

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
const results = {};
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, bypassCSP: true });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) console.error(`[page] ${m.text()}`); });
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));

  const apiRequests = [];
  page.on('request', (r) => { if (r.url().startsWith(BASE)) apiRequests.push(`${r.method()} ${new URL(r.url()).pathname}`); });
  // Part numbers confirmed by the API (200 answers), and storage PUTs per phase.
  const confirmed = new Set();
  page.on('response', (r) => {
    const m = new URL(r.url()).pathname.match(/^\/v1\/uploads\/[^/]+\/parts\/(\d+)$/);
    if (m && r.request().method() === 'PUT' && r.status() === 200) confirmed.add(Number(m[1]));
  });
  let phase = 'before';
  let slow = true;
  const storagePuts = { before: [], after: [] };
  let inFlight = 0;
  let maxInFlight = 0;
  await page.route((url) => url.searchParams.has('partNumber') && url.searchParams.has('uploadId'), async (route) => {
    const request = route.request();
    if (request.method() !== 'PUT') return route.continue();
    const n = Number(new URL(request.url()).searchParams.get('partNumber'));
    storagePuts[phase].push(n);
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    if (slow) await new Promise((resolve) => setTimeout(resolve, 1500));
    inFlight -= 1;
    // The reload cancels requests still held here.
    await route.continue().catch(() => {});
  });

  await page.goto(`${BASE}/#token=${TOKEN}`);
  await page.waitForSelector('body[data-ready="true"]');
  const policyText = await page.textContent('#policy');
  check(policyText.includes('image/*'), `policy shown (${policyText})`);

  // 1. Refused before any upload request.
  await page.setInputFiles('#file-input', [text, huge]);
  const message = await page.textContent('#message');
  check(/notes\.txt has a type that is not accepted/.test(message), `wrong type explained: ${message}`);
  check(/huge\.png is too large/.test(message), `too large explained: ${message}`);
  check(!apiRequests.some((r) => r === 'POST /v1/uploads'), 'no upload request for refused files');
  results.refusal = message;

  // Server errors are shown, not swallowed: a 429 is retried after its Retry-After, then a 413
  // (as if the policy changed since the page loaded it) ends the file with the reason.
  const small = join(WORK, 'small.png');
  writeFileSync(small, noisyPng(8, 8));
  const answers = [
    { status: 429, headers: { 'retry-after': '1' }, error: { code: 'rate_limited', message: 'slow down' } },
    { status: 413, headers: {}, error: { code: 'file_too_large', message: 'size 400 exceeds this tenant\'s limit of 100 bytes' } },
  ];
  let initiations = 0;
  await page.route(`${BASE}/v1/uploads`, async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    const answer = answers[Math.min(initiations, answers.length - 1)];
    initiations += 1;
    await route.fulfill({ status: answer.status, headers: answer.headers, contentType: 'application/json', body: JSON.stringify({ error: answer.error }) });
  });
  await page.setInputFiles('#file-input', small);
  const refused = page.locator('li.file', { hasText: 'small.png' });
  await refused.locator('.state', { hasText: 'Retrying in 1 s' }).waitFor({ timeout: 5_000 });
  await refused.locator('.error', { hasText: 'Too large: size 400 exceeds' }).waitFor({ timeout: 10_000 });
  check(initiations === 2, `the 429 was retried once (${initiations} initiations)`);
  results.server_error = await refused.locator('.error').textContent();
  await page.unroute(`${BASE}/v1/uploads`);

  // 2. Upload 2 parts at a time; reload once 2 parts are confirmed.
  await page.fill('#parallel', '2');
  await page.dispatchEvent('#parallel', 'change');
  await page.setInputFiles('#file-input', photo);
  const item = page.locator('li.file', { hasText: 'noisy-photo.png' });
  check(await item.locator('img.preview').evaluate((img) => img.src.startsWith('blob:')), 'instant local preview');
  await page.waitForFunction(() => Number(document.querySelector('li.file[data-key^="noisy-photo.png|"]')?.dataset.confirmed || 0) >= 2, null, { timeout: 60_000 });
  const uploadId = await item.getAttribute('data-upload-id');
  for (let i = 0; i < 40 && confirmed.size < 2; i += 1) await page.waitForTimeout(50);
  const confirmedBefore = [...confirmed].sort((a, b) => a - b);
  results.confirmed_before_reload = confirmedBefore;
  results.storage_puts_before_reload = [...storagePuts.before];
  check(confirmedBefore.length >= 2 && confirmedBefore.length < partCount, `reloaded mid-upload (${confirmedBefore})`);
  check(maxInFlight >= 2, `parts sent in parallel (at most ${maxInFlight} at once)`);

  phase = 'after';
  slow = false;
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForSelector('#resumable:not([hidden])');
  const resumable = await page.textContent('#resumable-list');
  check(resumable.includes('noisy-photo.png') && resumable.includes(`${confirmedBefore.length} of ${partCount} parts`), `unfinished upload listed: ${resumable}`);
  await page.setInputFiles('#file-input', photo);
  const resumed = page.locator('li.file', { hasText: 'noisy-photo.png' });
  await page.waitForFunction(() => { const li = document.querySelector('li.file'); return li?.dataset.resumed === 'true' && li.dataset.uploadId; });
  check((await resumed.getAttribute('data-upload-id')) === uploadId, 'the same upload continued');

  // 3. Live state until ready, then the thumbnail from storage.
  const thumb = resumed.locator('img.variant-thumb');
  await thumb.waitFor({ timeout: 120_000 });
  await page.waitForFunction(() => {
    const img = document.querySelector('li.file img.variant-thumb');
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 30_000 });
  const sse = (await resumed.getAttribute('data-sse')) || '';
  check(sse.includes('UploadReady'), `UploadReady came over SSE (${sse})`);
  const state = await resumed.getAttribute('data-state');
  check(state === 'ready', `page shows ready (${state})`);

  results.storage_puts_after_reload = [...storagePuts.after];
  const resent = storagePuts.after.filter((n) => confirmedBefore.includes(n));
  check(resent.length === 0, `no confirmed part re-sent (after reload: ${storagePuts.after}, confirmed before: ${confirmedBefore})`);
  const sent = new Set([...storagePuts.after, ...confirmedBefore]);
  check(sent.size === partCount, `every part sent (${[...sent]})`);
  check(apiRequests.some((r) => r.startsWith(`GET /v1/uploads/${uploadId}/parts`)), 'part URLs re-signed after the reload');

  results.upload_id = uploadId;
  results.sse = sse.split(' ');
  results.thumb_width = await thumb.evaluate((img) => img.naturalWidth);
  results.parts = partCount;
  if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(JSON.stringify(results));
} finally {
  await browser.close();
}
