// Drives meetsync's JavaScript client (static/meetsync-client.js) as a
// client app would, against a real meetsync: cmd/meetsync's TestJSClient
// starts `meetsync serve` (on the simulated meeting platform) and runs this
// with node. The business backend's side (login, logout, reads) uses the
// app key; the device's side only the client token. The outbox stores into
// a file, as localStorage would in a browser, and a "reload" is a new
// Outbox on the same file. Exits 0 after printing "ok: N checks".
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { base, key, post, sleep, until } from './helpers.mjs';
import { APIError, DeviceClient, Outbox } from '../static/meetsync-client.js';

let checks = 0;
const check = (what, fn) => { fn(); checks++; };

async function get(p) {
  const resp = await fetch(base + p, { headers: { Authorization: 'Bearer ' + key } });
  assert.equal(resp.status, 200, `GET ${p}`);
  return resp.json();
}

// FileStorage is a Web Storage on a file, written whole and renamed into
// place at every setItem, as durable as the page's localStorage.
class FileStorage {
  constructor(file) { this.file = file; }
  read() { return fs.existsSync(this.file) ? JSON.parse(fs.readFileSync(this.file, 'utf8')) : {}; }
  getItem(k) { return this.read()[k] ?? null; }
  setItem(k, v) {
    const all = this.read();
    all[k] = String(v);
    fs.writeFileSync(this.file + '.tmp', JSON.stringify(all));
    fs.renameSync(this.file + '.tmp', this.file);
  }
}

// The business backend logs alice in on her browser ("web").
let login = await post('/v1/users/alice/login', { device_id: 'web' });
let dc = new DeviceClient({ baseURL: base, token: login.client_token });

// ---- the seed's sequence: init, the meeting SDK's login ----
const init = await dc.init({ business: { ok: true }, meeting: { ok: true } });
check('init reported', () => assert.equal(init.event.duplicate, false));
const sess = await dc.login({ ok: true });
check('meeting login reported', () => assert.equal(sess.session.meeting, 'logged_in'));
const creds = await dc.credentials();
check('credentials', () => assert.ok(creds.meeting.user_uuid && creds.meeting.user_token));

// ---- the outbox: stored first, sent in order ----
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meetsync-outbox-'));
const storage = new FileStorage(path.join(dir, 'storage.json'));
let outbox = new Outbox({ client: dc, storage, key: 'alice/web', backoff: 20 });
check('first client_seq', () => assert.equal(outbox.reportStatus('in_meeting', { meetingNum: '81234567890' }), 1));
await outbox.flush();
let alice = await get('/v1/users/alice');
check('status sent', () => {
  assert.equal(alice.meeting.status, 'in_meeting');
  assert.equal(alice.meeting.device_id, 'web');
  assert.equal(outbox.length, 0);
});
outbox.close();

// Offline: the events wait in storage; the page is closed before they go.
let offline = true;
const flaky = (url, init) => (offline ? Promise.reject(new TypeError('fetch failed')) : fetch(url, init));
const states = [];
outbox = new Outbox({ client: new DeviceClient({ baseURL: base, token: login.client_token, fetch: flaky }), storage, key: 'alice/web',
  backoff: 20, onState: (s) => states.push(s) });
outbox.reportStatus('connecting');
outbox.reportStatus('in_meeting_minimized', { meetingNum: '81234567890' });
outbox.reportStatus('idle');
await until('the sender to find the network down', () => states.includes('offline'));
outbox.close();
check('kept in storage', () => {
  const saved = JSON.parse(storage.getItem('alice/web'));
  assert.equal(saved.lastSeq, 4);
  assert.deepEqual(saved.pending.map((e) => [e.client_seq, e.data.status]), [[2, 'connecting'], [3, 'in_meeting_minimized'], [4, 'idle']]);
});
// The page is opened again, online.
offline = false;
outbox = new Outbox({ client: dc, storage, key: 'alice/web', backoff: 20 });
check('reloaded', () => assert.equal(outbox.length, 3));
await outbox.flush();
const feed = await get('/v1/events?after=0&user_id=alice&type=meeting.status_changed');
check('sent in order, each once, none stale', () => {
  assert.deepEqual(feed.events.map((e) => [e.client_seq, e.data.status, e.stale]),
    [[1, 'in_meeting', false], [2, 'connecting', false], [3, 'in_meeting_minimized', false], [4, 'idle', false]]);
});

// An event the server refuses for good is dropped; the others go.
const dropped = [];
outbox.onDrop = (e, err) => dropped.push([e.client_seq, err.code, err.field]);
outbox.report({ type: 'meeting.status_changed', data: { status: 'dancing' } });
outbox.reportStatus('in_meeting', { meetingNum: '81234567890' });
await outbox.flush();
alice = await get('/v1/users/alice');
check('a refused event dropped', () => {
  assert.deepEqual(dropped, [[5, 'invalid', 'events[0].data.status']]);
  assert.equal(alice.meeting.status, 'in_meeting');
});

// ---- commands: the business system logs alice out ----
const commands = [];
const ac = new AbortController();
const following = dc.commands(async (cmd) => {
  commands.push(cmd.type);
  await dc.ack(cmd.id, { ok: true });
}, { signal: ac.signal });
await post('/v1/users/alice/logout', { reason: 'user clicked logout' });
await until('the logout command', () => commands.includes('logout'));
await until('the logout to complete', async () => (await get('/v1/users/alice')).session.business === 'logged_out');
ac.abort();
await following;
check('logout command acknowledged', () => assert.deepEqual(commands, ['logout']));

// The token died with the session: the outbox keeps the event and waits.
const paused = [];
outbox.onState = (s) => paused.push(s);
outbox.reportStatus('idle');
await outbox.flush();
check('paused on 401', () => {
  assert.ok(paused.includes('unauthorized'));
  assert.equal(outbox.length, 1);
});
const revoked = await dc.credentials().catch((e) => e);
check('revoked token', () => assert.ok(revoked instanceof APIError && revoked.status === 401));

// The next session: the outbox goes on with its token, client_seq going on.
login = await post('/v1/users/alice/login', { device_id: 'web' });
dc = new DeviceClient({ baseURL: base, token: login.client_token });
await dc.login({ ok: true });
outbox.setClient(dc);
await outbox.flush();
const last = (await get('/v1/events?after=0&user_id=alice&type=meeting.status_changed')).events.at(-1);
check('sent with the new session', () => {
  assert.equal(outbox.length, 0);
  assert.deepEqual([last.client_seq, last.data.status, last.stale], [7, 'idle', false]);
});
outbox.close();
fs.rmSync(dir, { recursive: true });
console.log(`ok: ${checks} checks`);
