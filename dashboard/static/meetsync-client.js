// meetsync's JavaScript client, for client apps in a browser, an Electron
// window or Node (18 and later: fetch and web streams); no dependencies.
//
// - DeviceClient: the device routes (/v1/client/…) with the client token
//   the business backend got for this device at login. A page on another
//   origin needs meetsync started with --cors-origins.
// - Outbox: the device's events, numbered (client_seq) and stored before
//   report() returns, in a Web Storage (localStorage) or anything with
//   getItem/setItem, then sent in order: a network drop, a reload or a
//   crash of the page loses none, and the server stores each once.
// - The pieces both use (and the dashboard's api.js): APIError, the
//   Server-Sent Events reader (SSEParser, follow) that sends the
//   Authorization header a browser's EventSource cannot.

// APIError is an error answer of the API ({"error":{"code","message","field"}}).
export class APIError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.name = 'APIError';
    this.status = status;
    this.code = code;
    this.field = field || '';
  }
}

// retryable says whether a request that failed with err may succeed later
// unchanged (the server or its database unavailable, a dropped connection).
export function retryable(err) {
  if (err instanceof APIError) return err.status === 429 || err.status >= 500;
  return !(err && err.name === 'AbortError');
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.append(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

export const seg = encodeURIComponent;

// sleep waits ms, or less if signal aborts.
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal && signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      if (signal) signal.removeEventListener('abort', done);
      resolve();
    }
    if (signal) signal.addEventListener('abort', done);
  });
}

// SSEParser splits a text/event-stream into messages, as the HTML
// standard's event-stream interpretation does: lines end in LF, CRLF or
// CR; "field: value" lines; ":" starts a comment; an empty line ends a
// message. push returns the messages a chunk completed, each
// {id, data, event, retry} with the fields it had (data undefined when it
// had no data line, as the stream's opening "id:" alone).
export class SSEParser {
  constructor() {
    this.buf = '';
    this.msg = {};
    this.data = null;
  }

  push(chunk) {
    this.buf += chunk;
    const out = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      if (!m) break;
      // A CR at the very end may be the first half of a CRLF: wait.
      if (m[0] === '\r' && m.index === this.buf.length - 1) break;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      if (line === '') {
        if (this.data !== null || Object.keys(this.msg).length > 0) {
          const msg = this.msg;
          if (this.data !== null) msg.data = this.data.join('\n');
          out.push(msg);
        }
        this.msg = {};
        this.data = null;
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      switch (field) {
        case 'data':
          (this.data || (this.data = [])).push(value);
          break;
        case 'id':
          if (!value.includes('\0')) this.msg.id = value;
          break;
        case 'event':
          this.msg.event = value;
          break;
        case 'retry':
          if (/^\d+$/.test(value)) this.msg.retry = Number(value);
          break;
      }
    }
    return out;
  }
}

// request calls the API: method and path (with params as its query) and
// body as JSON, with the bearer token; the answer's JSON, or an APIError.
export async function request(fetchFn, base, token, method, path, body, params, headers) {
  const init = { method, headers: Object.assign({ Authorization: 'Bearer ' + token }, headers) };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetchFn(base + path + query(params), init);
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) throw answerError(resp, data, text);
  return data;
}

// answerError is the APIError of a non-2xx answer (its Retry-After, in
// seconds, as retryAfter).
function answerError(resp, data, text) {
  const e = data && data.error;
  const err = new APIError(resp.status, (e && e.code) || 'http_' + resp.status,
    (e && e.message) || (text || '').slice(0, 300) || resp.statusText, e && e.field);
  const ra = Number(resp.headers.get('Retry-After'));
  if (ra > 0) err.retryAfter = ra;
  return err;
}

// follow reads a Server-Sent Events stream of the API and calls onMessage
// with each message that has data ({id, event, data}), in order. When the
// stream ends or the server is unavailable it connects again with
// Last-Event-ID set to the last id received (or lastEventID at first), after
// the server's retry delay (or Retry-After), so nothing is missed or
// repeated. It returns when signal aborts, and throws an APIError the server
// will answer the same way again (a revoked token, a bad filter). A failing
// onMessage is logged and passed over, not retried. onState(state, detail)
// hears 'open', 'retrying' (with the error) and 'closed'.
export async function follow(fetchFn, url, token, { lastEventID, signal, onState, onMessage } = {}) {
  const state = onState || (() => {});
  let last = lastEventID === undefined || lastEventID === null ? '' : String(lastEventID);
  let delay = 1000;
  try {
    while (!(signal && signal.aborted)) {
      let wait = delay;
      try {
        const headers = { Authorization: 'Bearer ' + token, Accept: 'text/event-stream' };
        if (last !== '') headers['Last-Event-ID'] = last;
        const resp = await fetchFn(url, { headers, signal });
        if (!resp.ok) {
          const text = await resp.text();
          let data = null;
          try {
            data = JSON.parse(text);
          } catch {
            data = null; // not JSON: the status says it
          }
          const err = answerError(resp, data, text);
          if (err.retryAfter) wait = err.retryAfter * 1000;
          throw err;
        }
        state('open');
        const parser = new SSEParser();
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const msg of parser.push(dec.decode(value, { stream: true }))) {
            if (msg.retry !== undefined) delay = msg.retry;
            if (msg.id !== undefined) last = msg.id;
            if (msg.data === undefined) continue;
            try {
              onMessage(msg);
            } catch (err) {
              console.error('meetsync stream: message ' + msg.id + ':', err);
            }
          }
        }
        state('retrying', new Error('the stream ended'));
      } catch (err) {
        if (signal && signal.aborted) return;
        if (!retryable(err)) throw err;
        state('retrying', err);
      }
      await sleep(wait, signal);
    }
  } finally {
    state('closed');
  }
}

// DeviceClient calls the device routes (/v1/client/…) with one device's
// client token (mct_…, from the business backend's POST
// /v1/users/{id}/login). The routes take the user and the device from the
// token. See docs/sessions.md for each route's contract.
export class DeviceClient {
  constructor({ baseURL, token, fetch: fetchImpl } = {}) {
    this.base = String(baseURL || '').replace(/\/+$/, '');
    this.token = token;
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
  }

  request(method, path, body, headers) {
    return request(this.fetch, this.base, this.token, method, path, body, undefined, headers);
  }

  // init reports the outcome of initialising both sides (the seed's first
  // step): init({business: {ok: true}, meeting: {ok: false, code: -1, message: '…'}}).
  init(report) { return this.request('POST', '/v1/client/init', report); }

  // login reports the meeting SDK's login: {ok: true}, or {ok: false, code, message}.
  login(result) { return this.request('POST', '/v1/client/login', result); }

  // credentials returns the meeting credentials again ({meeting: {…}});
  // refresh gets a new token (after the SDK's onAuthInfoExpired).
  credentials(refresh = false) { return this.request('POST', '/v1/client/credentials', { refresh }); }

  // postEvents posts events of this device ({events: [{id, seq, duplicate, stale}]}).
  postEvents(events) { return this.request('POST', '/v1/client/events', { events }); }

  // pendingCommands returns the commands not acknowledged yet.
  async pendingCommands() {
    const r = await this.request('GET', '/v1/client/commands', undefined, { Accept: 'application/json' });
    return r.commands;
  }

  // commands streams the device's commands ({id, type: 'logout' |
  // 'invitation' | 'invitation_canceled', data, …}) to onCommand until
  // signal aborts: those not acknowledged are sent again after a
  // reconnect, so acknowledge each (ack) once it is done.
  commands(onCommand, { signal, onState } = {}) {
    return follow(this.fetch, this.base + '/v1/client/commands', this.token,
      { signal, onState, onMessage: (msg) => onCommand(JSON.parse(msg.data)) });
  }

  // ack acknowledges a command: {ok: true}, or {ok: false, code, message}.
  ack(id, result = { ok: true }) { return this.request('POST', '/v1/client/commands/' + seg(id) + '/ack', result); }

  invitations() { return this.request('GET', '/v1/client/invitations'); }

  // answerInvitation answers an invitation: action 'accept' or 'reject'.
  answerInvitation(id, action, body) {
    return this.request('POST', '/v1/client/invitations/' + seg(id) + '/' + seg(action), body || {});
  }
}

// Outbox keeps a device's events until meetsync acknowledged them. report
// gives an event the device's next client_seq and stores it (with the
// counter) in storage before it returns; a sender posts the stored events
// in order, in batches, and removes them only once acknowledged. While
// meetsync cannot be reached (a network drop, a 5xx, 429) it retries with
// backoff; after a reload or a crash a new Outbox on the same storage and
// key sends what is left. The server stores each (device, client_seq) once
// and marks one older than the device's state stale, so a resend is
// harmless and a late event never moves the state back.
//
// An event the server refuses for good (400, 403, 413) is dropped and
// handed to onDrop(event, error). A 401 (the session ended) pauses the
// sender until setClient gives it the next session's client.
// onState(state, detail) hears 'sending', 'idle', 'offline' (with the
// error), 'unauthorized'.
export class Outbox {
  constructor({ client, storage, key = 'meetsync-outbox', batchSize = 100, backoff = 500, maxBackoff = 30000, onDrop, onState } = {}) {
    if (!storage || typeof storage.getItem !== 'function' || typeof storage.setItem !== 'function') {
      throw new TypeError('Outbox needs a storage with getItem and setItem (localStorage)');
    }
    this.client = client;
    this.storage = storage;
    this.key = key;
    this.batchSize = batchSize;
    this.backoff = backoff;
    this.maxBackoff = maxBackoff;
    this.onDrop = onDrop || (() => {});
    this.onState = onState || (() => {});
    const saved = JSON.parse(storage.getItem(key) || 'null') || { lastSeq: 0, pending: [] };
    this.lastSeq = saved.lastSeq;
    this.pending = saved.pending;
    this.sending = null;
    this.closed = false;
    this.paused = false;
    this.wake = null;
  }

  get length() { return this.pending.length; }

  save() { this.storage.setItem(this.key, JSON.stringify({ lastSeq: this.lastSeq, pending: this.pending })); }

  // report stores event (without user_id or device_id: the token says
  // them) with the next client_seq, starts sending, and returns the
  // client_seq. occurred_at defaults to now, so a late send keeps the
  // event's own time.
  report(event) {
    if (this.closed) throw new Error('the outbox is closed');
    const e = Object.assign({ occurred_at: new Date().toISOString() }, event, { client_seq: this.lastSeq + 1 });
    this.pending.push(e);
    this.lastSeq = e.client_seq;
    this.save();
    this.kick();
    return e.client_seq;
  }

  // reportStatus reports the meeting SDK's status (the NEMeeting code, the
  // SDK name or the snake-case name), its reason (arg) and meeting number.
  reportStatus(status, { arg, meetingNum } = {}) {
    const data = { status };
    if (arg !== undefined) data.arg = arg;
    if (meetingNum) data.meeting_num = meetingNum;
    return this.report({ type: 'meeting.status_changed', data });
  }

  // setClient gives the outbox the client of a new session (its token)
  // and resumes a sender paused by a 401.
  setClient(client) {
    this.client = client;
    this.paused = false;
    this.kick();
  }

  // kick starts the sender, or cuts its backoff short.
  kick() {
    if (this.wake) this.wake();
    if (!this.sending && !this.paused && !this.closed && this.pending.length > 0) {
      this.sending = this.send().finally(() => {
        this.sending = null;
        if (!this.paused && !this.closed && this.pending.length > 0) this.kick();
      });
    }
  }

  // flush resolves once everything stored so far was sent (or the sender
  // paused, or the outbox closed).
  async flush() {
    while (this.sending || (this.pending.length > 0 && !this.paused && !this.closed)) {
      this.kick();
      if (this.sending) await this.sending;
    }
  }

  close() {
    this.closed = true;
    if (this.wake) this.wake();
  }

  async send() {
    let delay = this.backoff;
    while (this.pending.length > 0 && !this.paused && !this.closed) {
      const batch = this.pending.slice(0, this.batchSize);
      this.onState('sending');
      try {
        await this.client.postEvents(batch);
        this.pending.splice(0, batch.length);
        this.save();
        delay = this.backoff;
        continue;
      } catch (err) {
        if (err instanceof APIError && err.status === 401) {
          this.paused = true;
          this.onState('unauthorized', err);
          return;
        }
        if (err instanceof APIError && !retryable(err)) {
          // A batch is all or nothing: drop the event the error names
          // (events[i]…) and send the others again; else the whole batch.
          const m = /^events\[(\d+)\]/.exec(err.field || '');
          const bad = m ? [Number(m[1])] : batch.map((_, i) => i);
          for (const i of bad.reverse()) {
            const [dropped] = this.pending.splice(i, 1);
            this.onDrop(dropped, err);
          }
          this.save();
          continue;
        }
        this.onState('offline', err);
        const wait = err instanceof APIError && err.retryAfter ? err.retryAfter * 1000 : delay;
        await new Promise((resolve) => {
          const t = setTimeout(resolve, wait);
          this.wake = () => { clearTimeout(t); resolve(); };
        });
        this.wake = null;
        delay = Math.min(delay * 2, this.maxBackoff);
      }
    }
    if (this.pending.length === 0) this.onState('idle');
  }
}
