// meetsync's /v1 API, as the dashboard uses it: requests carry the app's
// API key in the Authorization header, errors are thrown as APIError with
// the API's code, message and field, and the event stream (Server-Sent
// Events) is read through fetch, because a browser's EventSource cannot
// send an Authorization header. No DOM here: the module runs in a browser
// and in Node (>= 18, which has fetch), where the tests drive it against a
// real meetsync. The HTTP and SSE plumbing is meetsync-client.js's.
import { follow, query, request, seg } from './meetsync-client.js';

export { APIError, SSEParser, retryable } from './meetsync-client.js';

// Client calls one meetsync's API with one app's key.
export class Client {
  constructor(base, key, fetchImpl) {
    this.base = String(base || '').replace(/\/+$/, '');
    this.key = key;
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
  }

  request(method, path, body, params) {
    return request(this.fetch, this.base, this.key, method, path, body, params);
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

  // testEndpoint sends the endpoint one signed test webhook now and
  // returns {ok, attempt} (what the receiver answered).
  testEndpoint(id) { return this.request('POST', '/v1/endpoints/' + seg(id) + '/test', {}); }

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
  stream({ after, type, user_id } = {}, onEvent, { signal, onState } = {}) {
    const url = this.base + '/v1/events/stream' + query({ type, user_id });
    return follow(this.fetch, url, this.key, { lastEventID: after, signal, onState, onMessage: (msg) => onEvent(JSON.parse(msg.data)) });
  }
}
