// What api_test.mjs and ui_test.mjs share: the server under test (from
// the environment cmd/meetsync's TestDashboard* set) and how they post to it.
import assert from 'node:assert/strict';

export const base = process.env.MEETSYNC_URL;
export const key = process.env.MEETSYNC_KEY;
export const receiver = process.env.RECEIVER_URL;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// post POSTs body as JSON with the app's key and returns the answer, which
// must be a success.
export async function post(path, body) {
  const resp = await fetch(base + path, {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const data = await resp.json();
  assert.ok(resp.ok, `POST ${path}: ${resp.status} ${JSON.stringify(data)}`);
  return data;
}

// status is the meeting.status_changed event of user's laptop with client_seq seq.
export function status(user, seq, s) {
  return { type: 'meeting.status_changed', user_id: user, device_id: 'laptop', client_seq: seq, data: { status: s, meeting_num: '81234567890' } };
}

// until polls fn (async, returning a truthy value when done) every 25 ms
// for up to 20 s, and returns its value.
export async function until(what, fn) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what);
    await sleep(25);
  }
}
