// meetsync's /v1 API, as the dashboard uses it: requests carry the app's
// API key in the Authorization header, errors are thrown as APIError with
// the API's code, message and field, and the event stream (Server-Sent
// Events) is read through fetch, because a browser's EventSource cannot
// send an Authorization header. No DOM here: the module runs in a browser
// and in Node (>= 18, which has fetch), where the tests drive it against a
// real meetsync.

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

// Retryable says whether a request that failed with err may succeed later
// unchanged (the server or its database unavailable, a dropped connection).
export function retryable(err) {
  if (err instanceof APIError) return err.status === 429 || err.status >= 500;
  return !(err && err.name === 'AbortError');
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.append(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

const seg = encodeURIComponent;

// sleep waits ms, or less if signal aborts.
function sleep(ms, signal) {
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

// Client calls one meetsync's API with one app's key.
export class Client {
  constructor(base, key, fetchImpl) {
    this.base = String(base || '').replace(/\/+$/, '');
    this.key = key;
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
  }

  headers(extra) {
    return Object.assign({ Authorization: 'Bearer ' + this.key }, extra);
  }

  async request(method, path, body, params) {
    const init = { method, headers: this.headers() };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await this.fetch(this.base + path + query(params), init);
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!resp.ok) {
      const e = data && data.error;
      throw new APIError(resp.status, (e && e.code) || 'http_' + resp.status,
        (e && e.message) || text.slice(0, 300) || resp.statusText, e && e.field);
    }
    return data;
  }

  app() { return this.request('GET', '/v1/app'); }

  users({ status, limit, cursor } = {}) {
    return this.request('GET', '/v1/users', undefined, { status, limit, cursor });
  }

  user(id) { return this.request('GET', '/v1/users/' + seg(id)); }

  events({ after, limit, type, user_id } = {}) {
    return this.request('GET', '/v1/events', undefined, { after, limit, type, user_id });
  }

  endpoints() { return this.request('GET', '/v1/endpoints'); }

  endpoint(id) { return this.request('GET', '/v1/endpoints/' + seg(id)); }

  setEndpointEnabled(id, enabled) {
    return this.request('PATCH', '/v1/endpoints/' + seg(id), { enabled });
  }

  deliveries(endpointID, { status, limit, cursor } = {}) {
    return this.request('GET', '/v1/endpoints/' + seg(endpointID) + '/deliveries', undefined, { status, limit, cursor });
  }

  delivery(id) { return this.request('GET', '/v1/deliveries/' + seg(id)); }

  replay(id) { return this.request('POST', '/v1/deliveries/' + seg(id) + '/replay', {}); }

  // recover requeues every dead or failed delivery of the endpoint since
  // the time given (a Date or an RFC 3339 string).
  recover(endpointID, since) {
    const s = since instanceof Date ? since.toISOString() : since;
    return this.request('POST', '/v1/endpoints/' + seg(endpointID) + '/recover', { since: s });
  }

  // stream reads GET /v1/events/stream and calls onEvent with each event,
  // in feed order, each once. It starts after the cursor `after` (the
  // current end of the feed when undefined) and, when the stream ends or
  // the server is unavailable, connects again with Last-Event-ID set to the
  // last id received, so nothing is missed or repeated. It returns when
  // signal aborts, and throws an APIError the server will answer the same
  // way again (a revoked key, a bad filter). onState(state, detail) hears
  // 'open', 'retrying' (with the error) and 'closed'.
  async stream({ after, type, user_id } = {}, onEvent, { signal, onState } = {}) {
    const state = onState || (() => {});
    let last = after === undefined || after === null ? '' : String(after);
    let delay = 1000;
    try {
      while (!(signal && signal.aborted)) {
        let wait = delay;
        try {
          const headers = this.headers({ Accept: 'text/event-stream' });
          if (last !== '') headers['Last-Event-ID'] = last;
          const resp = await this.fetch(this.base + '/v1/events/stream' + query({ type, user_id }), { headers, signal });
          if (!resp.ok) {
            const text = await resp.text();
            let e = null;
            try {
              e = JSON.parse(text).error;
            } catch {
              e = null;
            }
            const err = new APIError(resp.status, (e && e.code) || 'http_' + resp.status, (e && e.message) || resp.statusText, e && e.field);
            const ra = Number(resp.headers.get('Retry-After'));
            if (ra > 0) wait = ra * 1000;
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
              // A failing handler must not stop the stream nor make it
              // deliver the event again: it is reported and passed.
              try {
                onEvent(JSON.parse(msg.data));
              } catch (err) {
                console.error('meetsync stream: event ' + msg.id + ':', err);
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
}
