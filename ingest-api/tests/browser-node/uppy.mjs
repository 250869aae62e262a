// Real Uppy (@uppy/core + @uppy/aws-s3 6.x, bundled for the browser with esbuild) in headless
// Chromium, uploading a multi-part noisy PNG through the ingest-api's Companion-compatible
// routes from a page on the API's origin (loaded into the uploader page): the page stores its browser token in the session
// cookie (POST /v1/session) and gives Uppy `companionEndpoint` = the API's origin, as the
// README describes. Parts go to storage through the presigned URLs (bucket CORS exposes ETag).
//
// Environment: BASE (API origin), TOKEN (browser token), WORK (scratch directory), CHROMIUM.
// Prints one JSON line ({key, upload_id, parts}); exits non-zero with a message on failure.

import { chromium } from 'playwright-core';
import { build } from 'esbuild';
import { writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { noisyPng } from './png.mjs';

const { BASE, TOKEN, WORK } = process.env;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const bundle = await build({
  stdin: {
    contents: "import Uppy from '@uppy/core';\nimport AwsS3 from '@uppy/aws-s3';\nwindow.Uppy = Uppy;\nwindow.AwsS3 = AwsS3;\n",
    resolveDir: process.cwd(),
  },
  bundle: true,
  write: false,
  format: 'iife',
  target: 'chrome120',
  logLevel: 'error',
});
const script = bundle.outputFiles[0].text;

const photo = join(WORK, 'uppy-photo.png');
writeFileSync(photo, noisyPng(3000, 2600));
const size = statSync(photo).size;

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
try {
  const context = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[page] ${m.text()}`); });
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  page.on('requestfailed', (r) => console.error(`[request failed] ${r.method()} ${r.url().split('?')[0]}: ${r.failure()?.errorText}`));
  const storageParts = new Set();
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (r.method() === 'PUT' && url.searchParams.has('partNumber')) storageParts.add(Number(url.searchParams.get('partNumber')));
  });
  // A page of the API's own origin (the uploader page, whose CSP is bypassed to add the bundle
  // and a file input): a document served from loopback may call storage on loopback.
  await page.goto(`${BASE}/`);
  await page.addScriptTag({ content: script });
  await page.evaluate(() => {
    const input = document.createElement('input');
    input.type = 'file';
    input.id = 'uppy-file';
    document.body.append(input);
  });
  await page.setInputFiles('#uppy-file', photo);
  const result = await page.evaluate(async ({ token, base }) => {
    const session = await fetch('/v1/session', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
    });
    if (session.status !== 204) throw new Error(`POST /v1/session answered ${session.status}`);
    const file = document.getElementById('uppy-file').files[0];
    const uppy = new window.Uppy({ autoProceed: false });
    uppy.use(window.AwsS3, { companionEndpoint: base, shouldUseMultipart: () => true, limit: 4 });
    uppy.addFile({ name: file.name, type: file.type, data: file, source: 'Local' });
    const outcome = await uppy.upload();
    return {
      successful: outcome.successful.map((f) => ({ key: f.s3Multipart?.key ?? f.meta?.key, uploadURL: f.uploadURL })),
      failed: outcome.failed.map((f) => String(f.error)),
    };
  }, { token: TOKEN, base: BASE });
  if (result.failed.length || result.successful.length !== 1) {
    throw new Error(`Uppy failed: ${JSON.stringify(result)}`);
  }
  // The object key Uppy reports (its multipart state, or the completed upload's location).
  const { key: reported, uploadURL } = result.successful[0];
  const key = reported || decodeURIComponent(uploadURL || '').match(/uploads\/[^/]+\/[^/]+\/original/)?.[0];
  if (!key) throw new Error(`no object key in Uppy's result: ${JSON.stringify(result)}`);
  const uploadId = key.split('/')[2];
  if (storageParts.size < 2) throw new Error(`expected a multi-part upload, saw parts ${[...storageParts]}`);
  console.log(JSON.stringify({ key, upload_id: uploadId, parts: storageParts.size, size }));
} finally {
  await browser.close();
}
