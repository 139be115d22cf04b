// Drives the dashboard's API module (static/api.js) against a real
// meetsync: cmd/meetsync's TestDashboard starts `meetsync serve` and a
// webhook receiver and runs this with node. Environment:
//   MEETSYNC_URL  the server        MEETSYNC_KEY  an API key of its app
//   RECEIVER_URL  the receiver: POST /hook answers 500 until POST /ok
// Exits 0 after printing "ok: N checks", else 1 with the failure.
import assert from 'node:assert/strict';
import { base, key, post, receiver, sleep, status, until } from './helpers.mjs';
import { APIError, Client, SSEParser, retryable } from '../static/api.js';

let checks = 0;
const check = (what, fn) => { fn(); checks++; };

// ---- the SSE parser, on the stream format's edge cases ----
{
  const p = new SSEParser();
  const got = [
    ...p.push('retry: 1000\nid: 5\n\n'),
    ...p.push(': keep-alive\n\nid: 6\ndata: {"a"'),
    ...p.push(':1}\n\nid: 7\r\ndata: line1\r\ndata: line2\r'),
    ...p.push('\n\r\nid: 8\rdata\r\r'),
    ...p.push('id: 9\n'),
  ];
  check('parser messages', () => assert.deepEqual(got, [
    { retry: 1000, id: '5' },
    { id: '6', data: '{"a":1}' },
    { id: '7', data: 'line1\nline2' },
    { id: '8', data: '' },
  ]));
  check('parser keeps an unfinished message', () => assert.deepEqual(p.push('data: x\n\n'), [{ id: '9', data: 'x' }]));
}
check('retryable', () => {
  assert.equal(retryable(new APIError(503, 'unavailable', 'x')), true);
  assert.equal(retryable(new APIError(401, 'unauthorized', 'x')), false);
  assert.equal(retryable(new TypeError('fetch failed')), true);
});

// ---- the page itself is served ----
{
  const page = await fetch(base + '/dashboard/');
  const html = await page.text();
  check('index.html', () => {
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type'), /^text\/html/);
    assert.match(page.headers.get('content-security-policy'), /script-src 'self'/);
    assert.match(html, /<script type="module" src="app.js">/);
  });
  for (const f of ['app.js', 'api.js']) {
    const r = await fetch(base + '/dashboard/' + f);
    await r.text();
    check(f + ' served as JavaScript', () => {
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), /javascript/);
    });
  }
  const root = await fetch(base + '/', { redirect: 'manual' });
  check('/ leads to the dashboard', () => assert.equal(root.headers.get('location'), '/dashboard/'));
}

const c = new Client(base + '/', key);

// ---- sign-in and errors ----
const app = await c.app();
check('app', () => assert.equal(app.name, 'default'));
const bad = await new Client(base, 'msk_' + 'x'.repeat(43)).app().catch((e) => e);
check('a wrong key is a 401 APIError', () => {
  assert.ok(bad instanceof APIError, String(bad));
  assert.equal(bad.status, 401);
  assert.ok(bad.code && bad.message);
});
const missing = await c.user('nobody').catch((e) => e);
check('an unknown user is a 404 APIError', () => {
  assert.ok(missing instanceof APIError);
  assert.equal(missing.status, 404);
  assert.equal(missing.code, 'not_found');
});
const badFilter = await c.stream({ type: 'Not A Type!' }, () => {}, {}).catch((e) => e);
check('a stream the server refuses throws', () => assert.ok(badFilter instanceof APIError && badFilter.status === 400, String(badFilter)));

// ---- the endpoint (its receiver fails for now) ----
const ep = await post('/v1/endpoints', { url: receiver + '/hook', event_types: ['meeting.*'], debounce_ms: 0 });

// ---- live stream: what commits arrives, once, in order ----
const seen = [];
const states = [];
let ac = new AbortController();
let streaming = c.stream({ type: 'meeting.*' }, (ev) => seen.push(ev), { signal: ac.signal, onState: (s) => states.push(s) });
await until('the stream to open', () => states.includes('open'));
await post('/v1/events', { events: [status('alice', 1, 'in_meeting'), status('bob', 1, 'idle')] });
await until('2 streamed events', () => seen.length >= 2);
check('streamed events', () => {
  assert.deepEqual(seen.map((e) => [e.type, e.user_id, e.data.status]), [['meeting.status_changed', 'alice', 'in_meeting'], ['meeting.status_changed', 'bob', 'idle']]);
  assert.ok(seen[0].cursor && seen[1].cursor && seen[0].cursor !== seen[1].cursor);
});
ac.abort();
await streaming;
check('stream states', () => assert.deepEqual([states[0], states.at(-1)], ['open', 'closed']));

// Resume after the last cursor seen: only what committed since.
await post('/v1/events', status('alice', 2, 'idle'));
const resumed = [];
ac = new AbortController();
streaming = c.stream({ after: seen.at(-1).cursor, type: 'meeting.*' }, (ev) => resumed.push(ev), { signal: ac.signal });
await until('the resumed event', () => resumed.length >= 1);
await sleep(300); // nothing more may come
ac.abort();
await streaming;
check('resumed stream', () => assert.deepEqual(resumed.map((e) => [e.user_id, e.data.status]), [['alice', 'idle']]));

// A filtered stream from the start of the feed.
const bobs = [];
ac = new AbortController();
streaming = c.stream({ after: 0, user_id: 'bob', type: 'meeting.*' }, (ev) => bobs.push(ev), { signal: ac.signal });
await until("bob's event", () => bobs.length >= 1);
ac.abort();
await streaming;
check('filtered stream', () => assert.deepEqual(bobs.map((e) => e.user_id), ['bob']));

// ---- users and the feed ----
const inMeeting = await c.users({ status: 'idle', limit: 10 });
check('users by status', () => assert.deepEqual(inMeeting.users.map((u) => u.user_id), ['alice', 'bob']));
const alice = await c.user('alice');
const aliceFeed = await c.events({ after: 0, user_id: 'alice' });
check('a user', () => {
  assert.equal(alice.meeting.status, 'idle');
  assert.equal(alice.last_seq, aliceFeed.events.at(-1).seq);
  assert.equal(alice.devices[0].device_id, 'laptop');
});
const page1 = await c.users({ limit: 1 });
const page2 = await c.users({ limit: 1, cursor: page1.next });
check('users paged', () => assert.deepEqual([page1.users[0].user_id, page2.users[0].user_id], ['alice', 'bob']));
const feed = await c.events({ after: 0, user_id: 'alice', type: 'meeting.*' });
check('the feed', () => assert.deepEqual(feed.events.map((e) => e.data.status), ['in_meeting', 'idle']));

// ---- deliveries: dead letters, attempts, replay, recovery ----
const eps = await c.endpoints();
check('endpoints', () => assert.deepEqual(eps.endpoints.map((e) => e.id), [ep.id]));
const dead = await until('3 dead deliveries', async () => {
  const r = await c.deliveries(ep.id, { status: 'dead' });
  return r.deliveries.length === 3 && r.deliveries;
});
const first = dead.find((d) => d.user_id === 'alice' && d.seq === feed.events[0].seq);
const detail = await c.delivery(first.id);
check('a dead delivery and its attempt', () => {
  assert.equal(detail.delivery.status, 'dead');
  assert.equal(detail.attempts.length, 1);
  assert.equal(detail.attempts[0].status_code, 500);
});
await fetch(receiver + '/ok', { method: 'POST' });
const replayed = await c.replay(first.id);
check('replay', () => assert.equal(replayed.requeued, 1));
await until('the replayed delivery delivered', async () => (await c.delivery(first.id)).delivery.status === 'delivered');
const recovered = await c.recover(ep.id, new Date(Date.now() - 3600e3));
check('recover', () => assert.equal(recovered.requeued, 2));
await until('every delivery delivered', async () => {
  const r = await c.deliveries(ep.id, { status: 'delivered' });
  return r.deliveries.length === 3;
});
await c.setEndpointEnabled(ep.id, false);
const off = await c.endpoint(ep.id);
check('disabled endpoint', () => assert.equal(off.enabled, false));
const on = await c.setEndpointEnabled(ep.id, true);
check('enabled again', () => assert.equal(on.enabled, true));
const badRecover = await c.recover(ep.id, 'yesterday').catch((e) => e);
check('a bad request names its field', () => assert.ok(badRecover instanceof APIError && badRecover.field === 'since', String(badRecover)));

console.log(`ok: ${checks} checks`);
