// Runs the dashboard page (static/index.html and app.js) in jsdom against
// a real meetsync: cmd/meetsync's TestDashboardUI starts `meetsync serve`
// and a webhook receiver and runs this with node (after `npm ci` here).
// Environment as api_test.mjs: MEETSYNC_URL, MEETSYNC_KEY, RECEIVER_URL
// (POST /hook answers 500 until POST /ok). It signs in through the form,
// walks every page, watches the users table and the event log update
// live, and replays a dead delivery with its button. Any error the page
// logs or throws fails it. Exits 0 after printing "ok: N checks".
import assert from 'node:assert/strict';
import { base, key, post, receiver, sleep, status } from './helpers.mjs';
import { JSDOM, VirtualConsole } from 'jsdom';

let checks = 0;
const check = (what, fn) => { fn(); checks++; };

// The data the pages show: two users, an endpoint whose receiver fails
// (so its deliveries die: the server runs one attempt per delivery).
const ep = await post('/v1/endpoints', { url: receiver + '/hook', event_types: ['meeting.*'], debounce_ms: 0, description: 'crm' });
await post('/v1/events', { events: [status('alice', 1, 'in_meeting'), status('bob', 1, 'idle')] });

// The page as the server serves it, in a window whose origin is the server.
const errors = [];
const vc = new VirtualConsole();
vc.on('error', (...a) => errors.push(a.map(String).join(' ')));
vc.on('jsdomError', (e) => errors.push('jsdom: ' + (e.stack || e)));
const html = await (await fetch(base + '/dashboard/')).text();
const dom = new JSDOM(html, { url: base + '/dashboard/', virtualConsole: vc, pretendToBeVisual: true });
const { window } = dom;
const { document } = window;
// app.js is an ES module: import it into this process with the window's
// globals (jsdom does not run module scripts); fetch, AbortController
// and URLSearchParams are Node's own.
for (const k of ['window', 'document', 'location', 'sessionStorage', 'Node', 'HTMLElement', 'Event']) {
  globalThis[k] = k === 'window' ? window : window[k];
}
console.error = (...a) => errors.push(a.map(String).join(' '));
process.on('unhandledRejection', (e) => errors.push('unhandled: ' + (e && e.stack || e)));

const $ = (sel) => document.querySelector(sel);
const $$ = (sel) => [...document.querySelectorAll(sel)];
const text = (el) => (el ? el.textContent.replace(/\s+/g, ' ').trim() : '');

// until polls cond (returning a truthy value when done) for up to 20 s.
async function until(what, cond) {
  const deadline = Date.now() + 20000;
  for (;;) {
    assert.deepEqual(errors, [], 'the page reported errors');
    assert.doesNotMatch(text($('#main')), /\[object |undefined|NaN/, 'the page shows a value it did not format');
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; page: ${text($('#main')).slice(0, 500)}`);
    await sleep(25);
  }
}

function goTo(hash) {
  window.location.hash = hash;
}

function rowOf(cellText) {
  return $$('#main tbody tr').find((tr) => [...tr.cells].some((td) => text(td) === cellText));
}

await import('../static/app.js');

// ---- sign in: a wrong key is refused, the right one opens the users ----
let form = await until('the sign-in form', () => $('form.sign-in'));
form.elements.key.value = 'msk_' + 'x'.repeat(43);
form.dispatchEvent(new window.Event('submit', { cancelable: true }));
await until('the refusal', () => text($('form.sign-in .error')).includes('not valid'));
check('wrong key refused', () => assert.equal(sessionStorage.getItem('meetsync-dashboard-key'), null));
form = $('form.sign-in');
form.elements.key.value = key;
form.dispatchEvent(new window.Event('submit', { cancelable: true }));
await until('the users page', () => rowOf('alice'));
check('signed in', () => {
  assert.equal(text($('#app-name')), 'default');
  assert.equal($('#nav').hidden, false);
  assert.equal($('nav a.active').getAttribute('href'), '#/users');
  assert.equal(sessionStorage.getItem('meetsync-dashboard-key'), key);
});
check('users table', () => {
  assert.match(text(rowOf('alice')), /in_meeting/);
  assert.match(text(rowOf('bob')), /idle/);
});

// ---- live: a status change shows in the table without a reload ----
await until('the stream', () => text($('#live')) === 'live');
await post('/v1/events', status('alice', 2, 'idle'));
await until("alice's row to turn idle", () => /idle/.test(text(rowOf('alice').cells[1])));
await post('/v1/events', status('carol', 1, 'in_meeting'));
await until('carol to appear', () => rowOf('carol'));
check('live users', () => assert.match(text(rowOf('carol')), /in_meeting/));

// The status filter, one status and "in a meeting (any)".
goTo('#/users?status=in_meeting');
await until('the filtered list', () => rowOf('carol') && !rowOf('alice'));
check('status filter', () => assert.equal($('#main select').value, 'in_meeting'));
await post('/v1/events', status('erin', 1, 'in_screen_sharing'));
const select = $('#main select');
select.value = 'in_meeting,in_meeting_minimized,in_screen_sharing';
select.dispatchEvent(new window.Event('change'));
await until('the users in any meeting', () => rowOf('carol') && rowOf('erin') && !rowOf('alice') && !rowOf('bob'));

// ---- one user ----
goTo('#/users/alice');
await until("alice's page", () => text($('#main h1')) === 'User alice' && $$('#main table').length === 2 && $$('#main table')[1].tBodies[0].rows.length >= 2);
check('user page', () => {
  const [devices, events] = $$('#main table');
  assert.match(text(devices), /laptop/);
  assert.match(text(events), /meeting\.status_changed/);
});

// ---- the event log, live ----
goTo('#/events');
await until('the event log', () => text($('#main h1')) === 'Event log' && text($('#live')) === 'live');
await post('/v1/events', status('dave', 1, 'connecting'));
await until("dave's status event", () => $$('#main tbody tr').find((tr) => text(tr.cells[2]) === 'dave' && /"status":"connecting"/.test(text(tr))));
check('live event log, newest first', () => assert.equal(text($('#main tbody tr').cells[2]), 'dave'));
goTo('#/events?from=start&type=meeting.*&user_id=bob');
await until("bob's feed", () => rowOf('bob'));
check('feed from the start, filtered', () => assert.equal($$('#main tbody tr').length, 1));

// ---- endpoints, dead letters, attempts, replay ----
goTo('#/endpoints');
await until('the endpoint list', () => rowOf(ep.id + 'crm') || rowOf(ep.id));
goTo('#/endpoints/' + ep.id + '?status=dead');
const deadRow = await until('a dead delivery of alice', async () => {
  const r = $$('#main tbody tr').find((tr) => /alice/.test(text(tr)));
  if (!r) {
    goTo('#/endpoints/' + ep.id + '?status=dead&n=' + Date.now()); // reload until the dispatcher gave up
    await sleep(200);
  }
  return r;
});
const deliveryID = text(deadRow.cells[0]);
// The receiver is down: the test webhook says so, with its answer.
$$('#main button').find((b) => text(b) === 'Send a test webhook').click();
await until('the test result', () => /Test webhook not accepted: HTTP 500 \(its answer: receiver down/.test(text($('#main'))));
await fetch(receiver + '/ok', { method: 'POST' });
deadRow.querySelector('button').click();
await until('the replay message', () => /1 requeued/.test(text($('#main'))));
goTo('#/deliveries/' + deliveryID);
await until('the delivery page', () => text($('#main h1')) === 'Delivery ' + deliveryID && $('#main table'));
check('attempts', () => assert.match(text($('#main table tbody tr')), /500/));
// The dispatcher sends it again: the page shows it delivered on a reload.
await until('the delivery delivered', async () => {
  goTo('#/deliveries/' + deliveryID + '?n=' + Date.now());
  await sleep(200);
  return /delivered/.test(text($('#main dl')));
});

// ---- sign out ----
$('#sign-out').click();
await until('the sign-in form again', () => $('form.sign-in'));
check('signed out', () => {
  assert.equal(sessionStorage.getItem('meetsync-dashboard-key'), null);
  assert.equal($('#nav').hidden, true);
  assert.equal(text($('#live')), '');
});
check('no page errors', () => assert.deepEqual(errors, []));
console.log(`ok: ${checks} checks`);
window.close();
process.exit(0);
