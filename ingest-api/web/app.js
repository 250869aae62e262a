// Tributary's web uploader: plain JavaScript against the public API (same origin), storage
// (presigned part URLs) and the realtime bridge (Server-Sent Events).
//
// - Files are checked against the tenant's policy (GET /v1/policy) before any upload request.
// - Parts go straight to storage, `parallel` at a time; each is confirmed with its ETag and only
//   then counted (progress is what the server confirmed).
// - A manifest per file in IndexedDB (upload id, part plan, confirmed parts) lets the upload
//   continue after a reload, a crash or a lost network: picking the same file again (name, size
//   and lastModified) sends only the parts not yet confirmed, with freshly signed URLs.
'use strict';

const $ = (selector, root = document) => root.querySelector(selector);
const MiB = 1024 * 1024;
const URL_MARGIN_MS = 60_000; // re-sign a part URL that expires within a minute
const state = { token: null, policy: null, files: new Map(), db: null };

// ---------- formatting and messages ----------

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function showMessage(text) {
  const box = $('#message');
  box.textContent = text;
  box.hidden = !text;
}

/** An API or storage failure with a message a person can act on. */
class UploadError extends Error {
  constructor(message, { status = 0, code = '', retryAfter = 0, retryable = false } = {}) {
    super(message);
    Object.assign(this, { status, code, retryAfter, retryable });
  }
}

async function apiError(response, what) {
  let code = '';
  let detail = '';
  try {
    const body = await response.json();
    code = body?.error?.code || '';
    detail = body?.error?.message || '';
  } catch { /* not JSON */ }
  const retryAfter = Number(response.headers.get('retry-after')) || 0;
  const status = response.status;
  const known = {
    400: `The server refused ${what}: ${detail || 'bad request'}.`,
    401: 'The browser token is missing, invalid or expired. Paste a fresh token.',
    403: `This token may not do that (${detail || 'forbidden'}).`,
    404: `${what} was not found (it may have expired).`,
    409: ['quota_exceeded', 'too_many_uploads'].includes(code)
      ? `Quota reached: ${detail}. Finish or delete other uploads first.`
      : `${what} is no longer possible: ${detail || 'conflict'}.`,
    413: `Too large: ${detail || 'the file exceeds the allowed size'}.`,
    415: `File type not allowed: ${detail || 'this tenant does not accept it'}.`,
    429: `Too many requests${code === 'quota_exceeded' ? ' or quota exceeded' : ''}: ${detail || 'slow down'}${retryAfter ? ` (retry in ${retryAfter} s)` : ''}.`,
    503: `The service is temporarily unavailable${retryAfter ? `; retrying in ${retryAfter} s` : ''}.`,
  };
  const message = known[status] || `${what} failed (HTTP ${status}${detail ? `: ${detail}` : ''}).`;
  const retryable = status === 429 ? code !== 'quota_exceeded' : (status >= 500 || status === 408);
  return new UploadError(message, { status, code, retryAfter, retryable });
}

async function api(method, path, { body, headers = {}, what = 'The request', signal } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      signal,
      headers: {
        authorization: `Bearer ${state.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new UploadError(`${what} could not reach the server (network).`, { retryable: true });
  }
  if (!response.ok) throw await apiError(response, what);
  return response.status === 204 ? null : response.json();
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(timer); reject(new DOMException('aborted', 'AbortError')); }, { once: true });
});

/** Runs `attempt` until it succeeds, retrying network errors, 5xx and 429 with backoff. */
async function withRetries(attempt, signal, onWait) {
  for (let tries = 0; ; tries += 1) {
    try {
      return await attempt();
    } catch (error) {
      if (error.name === 'AbortError' || !error.retryable || tries >= 8) throw error;
      const wait = error.retryAfter ? error.retryAfter * 1000 : Math.min(30_000, 500 * 2 ** tries);
      onWait?.(error, wait);
      if (!navigator.onLine) await waitOnline(signal);
      else await sleep(wait, signal);
    }
  }
}

function waitOnline(signal) {
  return new Promise((resolve, reject) => {
    const done = () => { window.removeEventListener('online', done); resolve(); };
    window.addEventListener('online', done);
    signal?.addEventListener('abort', () => { window.removeEventListener('online', done); reject(new DOMException('aborted', 'AbortError')); }, { once: true });
  });
}

// ---------- IndexedDB manifests ----------

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open('tributary-uploader', 1);
    request.onupgradeneeded = () => request.result.createObjectStore('manifests', { keyPath: 'key' });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function store(mode, run) {
  return new Promise((resolve, reject) => {
    const tx = state.db.transaction('manifests', mode);
    const result = run(tx.objectStore('manifests'));
    tx.oncomplete = () => resolve(result.result);
    tx.onerror = () => reject(tx.error);
  });
}

const manifestKey = (file) => `${file.name}|${file.size}|${file.lastModified}`;
const loadManifest = (key) => store('readonly', (s) => s.get(key));
const allManifests = () => store('readonly', (s) => s.getAll());
const saveManifest = (manifest) => store('readwrite', (s) => s.put(manifest));
const dropManifest = (key) => store('readwrite', (s) => s.delete(key));

async function renderResumable() {
  const manifests = (await allManifests()).filter((m) => ![...state.files.values()].some((f) => f.key === m.key));
  const list = $('#resumable-list');
  list.replaceChildren(...manifests.map((m) => {
    const li = document.createElement('li');
    const done = Object.keys(m.confirmed).length;
    li.textContent = `${m.filename} (${bytes(m.size)}): ${done} of ${m.part_count} parts confirmed `;
    const forget = document.createElement('button');
    forget.type = 'button';
    forget.textContent = 'Discard';
    forget.setAttribute('aria-label', `Discard the unfinished upload of ${m.filename}`);
    forget.addEventListener('click', async () => {
      api('DELETE', `/v1/uploads/${m.upload_id}`, { what: 'Cancelling' }).catch(() => {});
      await dropManifest(m.key);
      renderResumable();
    });
    li.append(forget);
    return li;
  }));
  $('#resumable').hidden = manifests.length === 0;
}

// ---------- policy ----------

function typeAllowed(type) {
  const kind = type.split('/')[0];
  return state.policy.allowed_content_types.some((allowed) => {
    const a = allowed.trim().toLowerCase();
    return a === '*/*' || a === type || (a.endsWith('/*') && a.slice(0, -2) === kind);
  });
}

/** Why `file` cannot be uploaded under the tenant's policy, or null. */
function refusal(file) {
  if (file.size === 0) return `${file.name} is empty.`;
  if (file.size > state.policy.max_file_size) {
    return `${file.name} is too large: ${bytes(file.size)}, the limit is ${bytes(state.policy.max_file_size)}.`;
  }
  const type = (file.type || 'application/octet-stream').toLowerCase();
  if (!typeAllowed(type)) {
    return `${file.name} has a type that is not accepted (${file.type || 'unknown type'}); allowed: ${state.policy.allowed_content_types.join(', ')}.`;
  }
  return null;
}

// ---------- one file ----------

class Upload {
  constructor(file) {
    this.file = file;
    this.key = manifestKey(file);
    this.manifest = null;
    this.urls = new Map(); // part number -> { url, expiresAt }
    this.controller = null;
    this.paused = false;
    this.finished = false;
    this.events = null;
    this.sse = [];
    this.li = $('#file-template').content.firstElementChild.cloneNode(true);
    this.li.dataset.key = this.key;
    $('.name', this.li).textContent = file.name;
    $('.size', this.li).textContent = bytes(file.size);
    $('.bar', this.li).setAttribute('aria-label', `Upload progress of ${file.name}`);
    $('.pause', this.li).addEventListener('click', () => this.pause());
    $('.resume', this.li).addEventListener('click', () => this.resume());
    $('.cancel', this.li).addEventListener('click', () => this.cancel());
    if (file.type.startsWith('image/')) {
      const img = $('.preview', this.li);
      img.src = URL.createObjectURL(file);
      img.alt = `Preview of ${file.name}`;
      img.onload = () => URL.revokeObjectURL(img.src);
      img.hidden = false;
      $('.icon', this.li).hidden = true;
    }
    $('#files').prepend(this.li);
  }

  setState(text, cls) {
    $('.state', this.li).textContent = text;
    this.li.dataset.state = cls || '';
    this.li.classList.toggle('ready', cls === 'ready');
    this.li.classList.toggle('failed', cls === 'failed');
  }

  fail(message) {
    const box = $('.error', this.li);
    box.textContent = message;
    box.hidden = false;
    this.setState('Failed', 'failed');
    this.buttons({});
    this.li.dataset.error = message;
  }

  buttons({ pause = false, resume = false, cancel = false }) {
    $('.pause', this.li).hidden = !pause;
    $('.resume', this.li).hidden = !resume;
    $('.cancel', this.li).hidden = !cancel;
  }

  confirmedBytes() {
    if (!this.manifest) return 0;
    const { part_size: size, part_count: count } = this.manifest;
    return Object.keys(this.manifest.confirmed).reduce((sum, n) => sum + (Number(n) === count ? this.file.size - (count - 1) * size : size), 0);
  }

  progress() {
    const done = this.confirmedBytes();
    const bar = $('.bar', this.li);
    bar.max = this.file.size;
    bar.value = done;
    if (this.manifest && !this.finished) {
      const parts = Object.keys(this.manifest.confirmed).length;
      this.li.dataset.confirmed = String(parts);
      this.setState(`${this.paused ? 'Paused · ' : ''}${parts} of ${this.manifest.part_count} parts confirmed · ${bytes(done)} of ${bytes(this.file.size)}`, this.paused ? 'paused' : 'uploading');
    }
    renderOverall();
  }

  async start() {
    const stored = await loadManifest(this.key);
    if (stored) {
      this.manifest = stored;
      this.li.dataset.resumed = 'true';
      try {
        const status = await api('GET', `/v1/uploads/${stored.upload_id}`, { what: 'Looking up the unfinished upload' });
        if (status.state !== 'uploading') {
          await dropManifest(this.key);
          if (['assembling', 'processing', 'ready'].includes(status.state)) {
            this.finished = true;
            this.progress();
            this.follow();
            return;
          }
          this.manifest = null; // expired, aborted or rejected: start over
        }
      } catch (error) {
        if (error.status !== 404) { this.fail(error.message); return; }
        await dropManifest(this.key);
        this.manifest = null;
      }
    }
    if (!this.manifest) {
      this.setState('Starting…', 'starting');
      const idempotency = crypto.randomUUID();
      let session;
      try {
        session = await withRetries(() => api('POST', '/v1/uploads', {
          what: 'Starting the upload',
          headers: { 'idempotency-key': idempotency },
          body: { filename: this.file.name, size: this.file.size, content_type: this.file.type || 'application/octet-stream' },
        }), undefined, (error, wait) => this.setState(`${error.message} Retrying in ${Math.round(wait / 1000)} s…`, 'waiting'));
      } catch (error) {
        this.fail(error.message);
        return;
      }
      this.manifest = {
        key: this.key, upload_id: session.upload_id, filename: this.file.name, size: this.file.size,
        last_modified: this.file.lastModified, content_type: session.content_type,
        part_size: session.part_size, part_count: session.part_count, events_url: session.events_url,
        confirmed: {}, created: Date.now(),
      };
      for (const p of session.parts) this.urls.set(p.part_number, { url: p.url, expiresAt: Date.parse(p.expires_at) });
      await saveManifest(this.manifest);
    }
    this.li.dataset.uploadId = this.manifest.upload_id;
    this.follow();
    renderResumable();
    this.progress();
    await this.run();
  }

  pause() {
    this.paused = true;
    this.controller?.abort();
    this.buttons({ resume: true, cancel: true });
    this.progress();
  }

  resume() {
    this.paused = false;
    if (this.running) this.rerun = true; // the paused run is still winding down
    else this.run();
  }

  async cancel() {
    this.paused = true;
    this.controller?.abort();
    this.events?.close();
    this.finished = true;
    if (this.manifest) {
      await dropManifest(this.key);
      api('DELETE', `/v1/uploads/${this.manifest.upload_id}`, { what: 'Cancelling' }).catch(() => {});
    }
    this.buttons({});
    this.setState('Cancelled', 'cancelled');
    renderResumable();
  }

  /** Uploads every part not yet confirmed, `parallel` at a time, then completes. */
  async run() {
    if (this.running || this.finished) return;
    this.running = true;
    this.controller = new AbortController();
    const { signal } = this.controller;
    this.buttons({ pause: true, cancel: true });
    this.progress();
    const pending = [];
    for (let n = 1; n <= this.manifest.part_count; n += 1) if (!this.manifest.confirmed[n]) pending.push(n);
    const worker = async () => {
      while (pending.length && !signal.aborted) {
        const n = pending.shift();
        try {
          await this.sendPart(n, signal);
        } catch (error) {
          pending.unshift(n);
          throw error;
        }
      }
    };
    const parallel = Math.max(1, Math.min(16, Number($('#parallel').value) || 4));
    try {
      await Promise.all(Array.from({ length: Math.min(parallel, pending.length) }, worker));
      if (signal.aborted) return;
      await this.complete(signal);
    } catch (error) {
      this.controller.abort();
      if (error.name !== 'AbortError' && !this.paused) this.fail(error.message);
    } finally {
      this.running = false;
      if (this.rerun) {
        this.rerun = false;
        this.run();
      }
    }
  }

  async url(n, signal) {
    const known = this.urls.get(n);
    if (known && known.expiresAt - Date.now() > URL_MARGIN_MS) return known.url;
    // Re-sign this part and the next few not yet confirmed.
    const count = Math.min(32, this.manifest.part_count - n + 1);
    const view = await withRetries(() => api('GET', `/v1/uploads/${this.manifest.upload_id}/parts?from=${n}&count=${count}`, { what: 'Signing part URLs', signal }), signal);
    for (const p of view.parts) this.urls.set(p.part_number, { url: p.url, expiresAt: Date.parse(p.expires_at) });
    return this.urls.get(n).url;
  }

  async sendPart(n, signal) {
    const { part_size: size } = this.manifest;
    const blob = this.file.slice((n - 1) * size, Math.min(n * size, this.file.size));
    const etag = await withRetries(async () => {
      const url = await this.url(n, signal);
      let response;
      try {
        response = await fetch(url, { method: 'PUT', body: blob, signal });
      } catch (error) {
        if (error.name === 'AbortError') throw error;
        throw new UploadError(`Part ${n} could not reach storage (network or CORS).`, { retryable: true });
      }
      if (response.status === 403) {
        // Most likely an expired signature: sign again and retry.
        this.urls.delete(n);
        throw new UploadError(`Storage refused part ${n} (expired URL?).`, { status: 403, retryable: true });
      }
      if (!response.ok) {
        throw new UploadError(`Storage answered HTTP ${response.status} for part ${n}.`, { status: response.status, retryable: response.status >= 500 });
      }
      const tag = response.headers.get('etag');
      if (!tag) throw new UploadError('Storage did not expose the ETag header (bucket CORS must expose ETag).');
      return tag;
    }, signal, (error, wait) => this.setState(`${error.message} Retrying in ${Math.round(wait / 1000)} s…`, 'waiting'));
    await withRetries(() => api('PUT', `/v1/uploads/${this.manifest.upload_id}/parts/${n}`, { body: { etag }, what: `Confirming part ${n}`, signal }), signal);
    this.manifest.confirmed[n] = etag;
    await saveManifest(this.manifest);
    this.progress();
  }

  async complete(signal) {
    this.setState('Completing…', 'completing');
    await withRetries(() => api('POST', `/v1/uploads/${this.manifest.upload_id}/complete`, { what: 'Completing the upload', signal }), signal);
    this.finished = true;
    await dropManifest(this.key);
    this.buttons({});
    this.setState('Uploaded · assembling…', 'assembling');
    renderOverall();
    renderResumable();
  }

  /** Follows the upload's lifecycle on the bridge (history first, then live). */
  follow() {
    if (this.events || !this.manifest?.events_url) return;
    const url = new URL(this.manifest.events_url);
    url.searchParams.set('token', state.token);
    const events = new EventSource(url);
    this.events = events;
    const on = (type, handler) => events.addEventListener(type, (event) => {
      this.sse.push(type);
      this.li.dataset.sse = this.sse.join(' ');
      let data = {};
      try { data = JSON.parse(event.data).payload || {}; } catch { /* keep {} */ }
      handler(data);
    });
    on('UploadCompletionRequested', () => { if (this.finished) this.setState('Uploaded · assembling…', 'assembling'); });
    on('UploadAssembled', () => this.setState('Assembled · validating…', 'validating'));
    on('UploadValidated', (p) => this.setState(`Validated (${p.detected_content_type || 'ok'}) · processing…`, 'processing'));
    on('UploadProgress', (p) => {
      if (p.stage !== 'uploading' && this.finished && this.li.dataset.state !== 'ready') {
        this.setState(`Processing ${p.stage}: ${Math.round(p.percent)} %`, 'processing');
      }
    });
    on('VariantProduced', (p) => { if (this.li.dataset.state !== 'ready') this.setState(`Variant ${p.variant} produced…`, 'processing'); });
    on('UploadReady', () => { events.close(); this.ready(); });
    on('UploadRejected', (p) => { events.close(); this.fail(`Rejected by the ${p.stage || 'pipeline'}: ${p.reason || p.reason_code}`); });
    on('ProcessingFailed', (p) => { events.close(); this.fail(`Processing failed (${p.stage}): ${p.reason}`); });
    on('UploadExpired', () => { events.close(); this.fail('The upload expired before it was completed.'); });
    on('reauth', () => { /* the token is about to expire; the stream closes and the page keeps its state */ });
  }

  /** Shows the produced variants (status from the read models, which may lag a moment). */
  async ready() {
    this.setState('Ready', 'ready');
    this.buttons({});
    for (let attempt = 0; attempt < 20; attempt += 1) {
      let status;
      try {
        status = await api('GET', `/v1/uploads/${this.manifest.upload_id}`, { what: 'Reading the variants' });
      } catch (error) {
        this.fail(error.message);
        return;
      }
      if (status.state === 'ready' && status.variants.length) {
        this.showVariants(status.variants);
        return;
      }
      await sleep(500);
    }
  }

  showVariants(variants) {
    const box = $('.variants', this.li);
    const order = { thumb: 0, poster: 1, display: 2 };
    const figures = [...variants].sort((a, b) => (order[a.variant] ?? 9) - (order[b.variant] ?? 9)).map((v) => {
      const figure = document.createElement('figure');
      const caption = document.createElement('figcaption');
      caption.textContent = `${v.variant}${v.width ? ` · ${v.width}×${v.height}` : ''} · ${bytes(v.size)}`;
      if (v.content_type.startsWith('image/')) {
        const img = document.createElement('img');
        img.className = `variant variant-${v.variant} ${v.variant}`;
        img.alt = `${v.variant} of ${this.file.name}`;
        img.src = v.url;
        if (v.variant === 'thumb') img.width = Math.min(v.width || 160, 160);
        figure.append(img);
      } else if (v.content_type.includes('mpegurl')) {
        const video = document.createElement('video');
        video.controls = true;
        video.className = 'variant variant-hls';
        if (video.canPlayType('application/vnd.apple.mpegurl')) {
          video.src = v.url;
          figure.append(video);
        } else {
          const link = document.createElement('a');
          link.href = v.url;
          link.textContent = 'HLS playlist (this browser has no native HLS playback)';
          figure.append(link);
        }
      } else {
        const link = document.createElement('a');
        link.href = v.url;
        link.textContent = `Download ${v.variant}`;
        figure.append(link);
      }
      figure.append(caption);
      return figure;
    });
    box.replaceChildren(...figures);
    box.hidden = false;
  }
}

function renderOverall() {
  let total = 0;
  let done = 0;
  let active = 0;
  for (const upload of state.files.values()) {
    if (!upload.manifest) continue;
    total += upload.file.size;
    done += upload.finished ? upload.file.size : upload.confirmedBytes();
    if (!upload.finished) active += 1;
  }
  const bar = $('#overall-progress');
  bar.max = total || 1;
  bar.value = done;
  $('#overall-text').textContent = total
    ? `${bytes(done)} of ${bytes(total)} confirmed${active ? ` · ${active} uploading` : ' · all sent'}`
    : 'Nothing uploading';
}

// ---------- picking files ----------

function addFiles(fileList) {
  const refusals = [];
  for (const file of fileList) {
    const why = refusal(file);
    if (why) { refusals.push(why); continue; }
    const key = manifestKey(file);
    const existing = state.files.get(key);
    if (existing && !existing.finished && existing.li.dataset.state !== 'failed') continue;
    const upload = new Upload(file);
    state.files.set(key, upload);
    upload.start().catch((error) => upload.fail(error.message || String(error)));
  }
  showMessage(refusals.join('\n'));
}

function setUpPicker() {
  const input = $('#file-input');
  input.addEventListener('change', () => { addFiles(input.files); input.value = ''; });
  const zone = $('#dropzone');
  zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    addFiles(event.dataTransfer.files);
  });
  // A file dropped next to the zone must not replace the page.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
  const parallel = $('#parallel');
  parallel.value = localStorage.getItem('tributary.parallel') || '4';
  parallel.addEventListener('change', () => localStorage.setItem('tributary.parallel', parallel.value));
  window.addEventListener('online', () => {
    for (const upload of state.files.values()) if (!upload.finished && !upload.paused && !upload.running) upload.run();
  });
}

// ---------- start-up ----------

function tokenFromPage() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('token');
  if (token) sessionStorage.setItem('tributary.token', token);
  return token || sessionStorage.getItem('tributary.token');
}

async function begin(token) {
  state.token = token;
  try {
    state.policy = await api('GET', '/v1/policy', { what: 'Loading the policy' });
  } catch (error) {
    sessionStorage.removeItem('tributary.token');
    $('#auth').hidden = false;
    $('#uploader').hidden = true;
    showMessage('');
    const note = $('#auth p');
    note.textContent = error.message;
    note.setAttribute('role', 'alert');
    return;
  }
  $('#auth').hidden = true;
  $('#uploader').hidden = false;
  const input = $('#file-input');
  input.accept = state.policy.allowed_content_types.map((t) => (t === '*/*' ? '' : t)).filter(Boolean).join(',');
  $('#policy').textContent = `${state.policy.name}: ${state.policy.allowed_content_types.join(', ')}, up to ${bytes(state.policy.max_file_size)} per file.`;
  document.body.dataset.ready = 'true';
  await renderResumable();
}

async function main() {
  state.db = await openDb();
  setUpPicker();
  $('#token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('#token-input').value.trim();
    sessionStorage.setItem('tributary.token', token);
    begin(token);
  });
  $('#forget-token').addEventListener('click', () => {
    sessionStorage.removeItem('tributary.token');
    history.replaceState(null, '', location.pathname);
    location.reload();
  });
  const token = tokenFromPage();
  if (token) await begin(token);
  else $('#auth').hidden = false;
}

main().catch((error) => showMessage(`The page could not start: ${error.message || error}`));
