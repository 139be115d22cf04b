// The dashboard's pages: users and their live status, a user's session,
// devices and events, the live event log, endpoints with their deliveries
// and attempts, dead letters with replay. Everything it shows comes from
// the /v1 API (api.js) with the key the operator signed in with; pages
// are built with textContent only, never from HTML strings.
import { APIError, Client } from './api.js';

const KEY = 'meetsync-dashboard-key';
const STATUSES = ['in_meeting', 'in_meeting_minimized', 'in_screen_sharing', 'in_waiting_room', 'waiting',
  'connecting', 'disconnecting', 'idle', 'failed', 'unknown'];
const IN_A_MEETING = 'in_meeting,in_meeting_minimized,in_screen_sharing';
const DELIVERY_STATUSES = ['dead', 'failed', 'pending', 'delivered', 'superseded'];
const MAX_LOG_ROWS = 500;
const MAX_USER_ROWS = 1000;
const NEW_PER_TICK = 20;

const main = document.getElementById('main');
const live = document.getElementById('live');
let client = null;
let cleanup = () => {};

// h builds an element: attributes (on* are listeners), then children
// (strings become text nodes; null and false are skipped).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function time(s) {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d) ? String(s) : d.toLocaleString();
}

function statusBadge(status) {
  const cls = {
    in_meeting: 'ok', in_meeting_minimized: 'ok', in_screen_sharing: 'ok',
    waiting: 'warn', connecting: 'warn', in_waiting_room: 'warn', disconnecting: 'warn',
    failed: 'bad', delivered: 'ok', pending: 'warn', dead: 'bad', superseded: '',
    logged_in: 'ok', pending_login: 'warn', logging_out: 'warn',
  }[status];
  return h('span', { class: 'badge ' + (cls || '') }, status || '—');
}

function link(href, text) { return h('a', { href }, text); }
function userLink(id) { return link('#/users/' + encodeURIComponent(id), id); }

function table(head, rows) {
  return h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))), h('tbody', {}, rows));
}

function fields(pairs) {
  return h('dl', { class: 'fields' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v instanceof Node ? v : String(v))]));
}

function errorBox(err) {
  return h('p', { class: 'error' }, err instanceof APIError ? `${err.status} ${err.code}: ${err.message}` : String(err));
}

// show replaces the page, after ending the previous page's streams.
function show(...nodes) {
  main.replaceChildren(...nodes);
}

function setLive(state) {
  live.hidden = !state;
  live.className = 'live ' + (state || '');
  live.textContent = state === 'open' ? 'live' : state === 'retrying' ? 'reconnecting…' : '';
}

// follow streams events matching filter to onEvent until the page changes.
function follow(filter, onEvent) {
  const ac = new AbortController();
  client.stream(filter, onEvent, { signal: ac.signal, onState: (s) => setLive(s === 'closed' ? '' : s) })
    .catch((err) => { setLive(''); main.prepend(errorBox(err)); });
  return () => ac.abort();
}

function params() {
  const [path, q] = location.hash.slice(1).split('?');
  return { path: path || '/users', q: new URLSearchParams(q || '') };
}

function go(path, q) {
  const s = new URLSearchParams(Object.entries(q || {}).filter(([, v]) => v)).toString();
  location.hash = path + (s ? '?' + s : '');
}

// ---- users -----------------------------------------------------------

function userRow(u) {
  const m = u.meeting || {};
  const s = u.session || {};
  return h('tr', { 'data-user': u.user_id },
    h('td', {}, userLink(u.user_id)),
    h('td', {}, statusBadge(m.status)),
    h('td', { class: 'mono' }, m.meeting_num || ''),
    h('td', {}, time(m.since)),
    h('td', {}, statusBadge(s.business), ' ', statusBadge(s.meeting)),
    h('td', { class: 'num' }, u.last_seq ?? ''),
    h('td', {}, time(u.updated_at)));
}

async function usersPage(q) {
  const status = q.get('status') || '';
  const select = h('select', { onchange: (e) => go('/users', { status: e.target.value }) },
    h('option', { value: '' }, 'every status'),
    h('option', { value: IN_A_MEETING, selected: status === IN_A_MEETING }, 'in a meeting (any)'),
    STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)));
  const body = h('tbody');
  const rows = new Map(); // user id → its row
  const add = (u) => {
    const row = userRow(u);
    rows.set(u.user_id, row);
    return row;
  };
  const more = h('button', { class: 'more', hidden: true }, 'More');
  show(h('h1', {}, 'Users'), h('div', { class: 'toolbar' }, h('label', {}, 'Status ', select)),
    h('table', {}, h('thead', {}, h('tr', {}, ['User', 'Meeting status', 'Meeting', 'Since', 'Session (business, meeting)', 'Last seq', 'Updated']
      .map((c) => h('th', {}, c)))), body), more);
  let cursor = '';
  async function page() {
    more.disabled = true;
    try {
      const r = await client.users({ status, limit: 100, cursor });
      body.append(...r.users.map(add));
      cursor = r.next || '';
      more.hidden = !cursor;
    } catch (err) {
      main.append(errorBox(err));
    }
    more.disabled = false;
  }
  more.onclick = page;
  await page();
  // A user whose events commit is read again and its row replaced (or
  // added on top, marked, when the filter now matches it).
  const pending = new Set();
  let timer = 0;
  // Under a heavy load the page keeps up with the rows it shows and adds
  // at most NEW_PER_TICK users a tick (and MAX_USER_ROWS in all): it never
  // reads every user of a busy app.
  async function refresh() {
    timer = 0;
    const shown = [...pending].filter((id) => rows.has(id));
    const fresh = [...pending].filter((id) => !rows.has(id)).slice(0, Math.max(0, Math.min(NEW_PER_TICK, MAX_USER_ROWS - rows.size)));
    pending.clear();
    for (const id of [...shown, ...fresh]) {
      let u;
      try {
        u = await client.user(id);
      } catch {
        continue;
      }
      const row = rows.get(id);
      const matches = !status || (u.meeting && status.split(',').includes(u.meeting.status));
      if (!matches) {
        if (row) row.remove();
        rows.delete(id);
        continue;
      }
      const next = add(u);
      next.classList.add('flash');
      if (row) row.replaceWith(next);
      else body.prepend(next);
    }
  }
  // The types that change what the table shows.
  return follow({ type: 'meeting.*,session.*,client.*' }, (ev) => {
    if (!ev.user_id || ev.user_id.startsWith('@')) return;
    pending.add(ev.user_id);
    if (!timer) timer = setTimeout(refresh, 250);
  });
}

async function userPage(id) {
  show(h('h1', {}, 'User ', h('code', {}, id)));
  let u;
  try {
    u = await client.user(id);
  } catch (err) {
    main.append(errorBox(err));
    return () => {};
  }
  const m = u.meeting || {};
  const s = u.session || {};
  const p = u.platform || {};
  main.append(
    h('h2', {}, 'Meeting'),
    fields([['status', statusBadge(m.status)], ['code', m.code], ['reason', m.reason], ['meeting', m.meeting_num],
      ['device', m.device_id], ['since', time(m.since)], ['last seq', u.last_seq], ['updated', time(u.updated_at)]]),
    h('h2', {}, 'Session'),
    fields([['business side', statusBadge(s.business)], ['meeting side', statusBadge(s.meeting)], ['session', s.id],
      ['policy', s.policy], ['deadline', time(s.deadline)], ['started', time(s.started_at)],
      ['login attempts', s.login_attempts], ['devices', (s.devices || []).join(', ')],
      ['token revocation pending', s.revoke_pending ? 'yes' : '']]),
    p.meeting_num || p.in_meeting !== undefined
      ? [h('h2', {}, 'Platform'), fields([['in meeting', p.in_meeting ? 'yes' : 'no'], ['meeting', p.meeting_num], ['since', time(p.since)]])]
      : null,
    h('h2', {}, 'Devices'),
    table(['Device', 'Status', 'Meeting', 'Last client_seq', 'Last seen'], (u.devices || []).map((d) => h('tr', {},
      h('td', { class: 'mono' }, d.device_id), h('td', {}, statusBadge(d.meeting && d.meeting.status)),
      h('td', { class: 'mono' }, (d.meeting && d.meeting.meeting_num) || ''), h('td', { class: 'num' }, d.last_client_seq ?? ''),
      h('td', {}, time(d.last_seen_at))))),
    h('h2', {}, 'Events ', h('span', { class: 'muted' }, '(oldest first; new ones appear as they commit)')));
  return feedView({ user_id: id });
}

// ---- events ----------------------------------------------------------

function eventTable(newestFirst) {
  const body = h('tbody');
  const el = h('table', {}, h('thead', {}, h('tr', {}, ['Cursor', 'Type', 'User', 'Seq', 'Device', 'Occurred', 'Received', 'Data']
    .map((c) => h('th', {}, c)))), body);
  return {
    el,
    add(e, flash) {
      const row = h('tr', { class: flash ? 'flash' : null },
        h('td', { class: 'mono' }, e.cursor),
        h('td', {}, e.type, e.stale ? [' ', h('span', { class: 'badge warn' }, 'stale')] : null),
        h('td', {}, e.user_id && !e.user_id.startsWith('@') ? userLink(e.user_id) : e.user_id || ''),
        h('td', { class: 'num' }, e.seq ?? ''),
        h('td', { class: 'mono' }, e.device_id || ''),
        h('td', {}, time(e.occurred_at)),
        h('td', {}, time(e.received_at)),
        h('td', { class: 'mono' }, JSON.stringify(e.data)));
      if (newestFirst) {
        body.prepend(row);
        while (body.rows.length > MAX_LOG_ROWS) body.lastElementChild.remove();
      } else {
        body.append(row);
      }
    },
  };
}

// feedView appends the feed (filtered) to the page oldest first, from its
// start, a page at a time; once the last page is read it follows the feed
// live from there, so no event is missed or shown twice.
async function feedView(filter) {
  const log = eventTable(false);
  const more = h('button', { class: 'more', hidden: true }, 'More');
  main.append(log.el, more);
  let after = '0';
  let stop = () => {};
  async function page() {
    more.disabled = true;
    try {
      const r = await client.events({ ...filter, after, limit: 100 });
      r.events.forEach((e) => log.add(e, false));
      after = r.next || after;
      more.hidden = r.events.length < 100;
      if (r.events.length < 100) stop = follow({ ...filter, after }, (ev) => log.add(ev, true));
    } catch (err) {
      main.append(errorBox(err));
    }
    more.disabled = false;
  }
  more.onclick = page;
  await page();
  return () => stop();
}

function eventsPage(q) {
  const type = q.get('type') || '';
  const user = q.get('user_id') || '';
  const fromStart = q.get('from') === 'start';
  const typeIn = h('input', { value: type, placeholder: 'meeting.*, order.paid' });
  const userIn = h('input', { value: user, placeholder: 'user id' });
  const form = h('form', {
    class: 'toolbar',
    onsubmit: (e) => {
      e.preventDefault();
      go('/events', { type: typeIn.value.trim(), user_id: userIn.value.trim(), from: fromStart ? 'start' : '' });
    },
  }, h('label', {}, 'Type ', typeIn), h('label', {}, 'User ', userIn), h('button', { type: 'submit' }, 'Filter'),
  fromStart
    ? [h('span', { class: 'muted' }, 'the whole feed, oldest first, then live;'), link('#/events?' + new URLSearchParams({ type, user_id: user }), 'only new events')]
    : [h('span', { class: 'muted' }, `events as they commit, newest first (the last ${MAX_LOG_ROWS} kept);`),
      link('#/events?' + new URLSearchParams({ type, user_id: user, from: 'start' }), 'the feed from its start')]);
  show(h('h1', {}, 'Event log'), form);
  if (fromStart) return feedView({ type, user_id: user });
  const log = eventTable(true);
  main.append(log.el);
  return follow({ type, user_id: user }, (ev) => log.add(ev, true));
}

// ---- endpoints and deliveries ----------------------------------------

async function endpointsPage() {
  show(h('h1', {}, 'Endpoints'));
  try {
    const r = await client.endpoints();
    main.append(table(['Endpoint', 'URL', 'Events', 'State', 'Failing since', 'Created'], r.endpoints.map((ep) => h('tr', {},
      h('td', {}, link('#/endpoints/' + encodeURIComponent(ep.id), ep.id), ep.description ? h('div', { class: 'muted' }, ep.description) : null),
      h('td', { class: 'mono' }, ep.url),
      h('td', {}, (ep.event_types || []).length ? ep.event_types.join(', ') : 'every event'),
      h('td', {}, ep.enabled ? statusBadge('enabled') : h('span', { class: 'badge bad' }, 'disabled'), ep.disabled_reason ? h('div', { class: 'muted' }, ep.disabled_reason) : null),
      h('td', {}, time(ep.failing_since)),
      h('td', {}, time(ep.created_at))))));
    if (!r.endpoints.length) main.append(h('p', { class: 'muted' }, 'No endpoints yet: POST /v1/endpoints registers one.'));
  } catch (err) {
    main.append(errorBox(err));
  }
  return () => {};
}

function deliveryRow(d, onReplay) {
  const replay = d.status === 'dead' || d.status === 'failed'
    ? h('button', { onclick: async (e) => { e.target.disabled = true; await onReplay(d); } }, 'Replay')
    : null;
  return h('tr', {},
    h('td', {}, link('#/deliveries/' + encodeURIComponent(d.id), d.id)),
    h('td', {}, statusBadge(d.status)),
    h('td', {}, d.event_type),
    h('td', {}, d.user_id && !d.user_id.startsWith('@') ? userLink(d.user_id) : d.user_id || ''),
    h('td', { class: 'num' }, d.seq ?? ''),
    h('td', { class: 'num' }, d.attempts ?? 0),
    h('td', {}, d.last_status_code ? String(d.last_status_code) + ' ' : '', d.last_error || ''),
    h('td', {}, time(d.next_attempt_at)),
    h('td', {}, replay));
}

async function endpointPage(id, q) {
  const status = q.get('status') || '';
  show(h('h1', {}, 'Endpoint ', h('code', {}, id)));
  const msg = h('p', { class: 'muted' });
  let ep;
  try {
    ep = await client.endpoint(id);
  } catch (err) {
    main.append(errorBox(err));
    return () => {};
  }
  const toggle = h('button', {
    onclick: async () => {
      toggle.disabled = true;
      try {
        await client.setEndpointEnabled(id, !ep.enabled);
        route();
      } catch (err) {
        msg.replaceChildren(errorBox(err));
        toggle.disabled = false;
      }
    },
  }, ep.enabled ? 'Disable' : 'Enable');
  const test = h('button', {
    onclick: async () => {
      test.disabled = true;
      try {
        const r = await client.testEndpoint(id);
        const a = r.attempt;
        msg.textContent = r.ok
          ? `Test webhook accepted: the receiver answered ${a.status_code} in ${a.latency_ms} ms.`
          : `Test webhook not accepted: ${a.error}` + (a.response_body ? ` (its answer: ${a.response_body})` : '');
      } catch (err) {
        msg.replaceChildren(errorBox(err));
      }
      test.disabled = false;
    },
  }, 'Send a test webhook');
  const since = h('input', { type: 'datetime-local', required: true });
  const recover = h('form', {
    class: 'toolbar',
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const r = await client.recover(id, new Date(since.value));
        msg.textContent = `${r.requeued} dead or failed deliveries requeued, in order per user.`;
      } catch (err) {
        msg.replaceChildren(errorBox(err));
      }
    },
  }, h('label', {}, 'Recover every dead or failed delivery since ', since), h('button', { type: 'submit' }, 'Recover'));
  main.append(
    fields([['URL', h('code', {}, ep.url)], ['description', ep.description], ['events', (ep.event_types || []).length ? ep.event_types.join(', ') : 'every event'],
      ['debounce', ep.debounce_ms + ' ms'], ['rate limit', ep.rate_limit_per_s ? ep.rate_limit_per_s + '/s' : 'none'],
      ['state', ep.enabled ? 'enabled' : 'disabled' + (ep.disabled_reason ? ': ' + ep.disabled_reason : '')],
      ['failing since', time(ep.failing_since)], ['created', time(ep.created_at)]]),
    h('div', { class: 'toolbar' }, toggle, test), recover, msg,
    h('h2', {}, 'Deliveries'),
    h('div', { class: 'toolbar' }, ['', ...DELIVERY_STATUSES].map((s) =>
      h('a', { href: '#/endpoints/' + encodeURIComponent(id) + (s ? '?status=' + s : ''), class: s === status ? 'badge ok' : 'badge' }, s || 'all'))));
  const body = h('tbody');
  main.append(h('table', {}, h('thead', {}, h('tr', {}, ['Delivery', 'Status', 'Type', 'User', 'Seq', 'Attempts', 'Last answer', 'Next attempt', '']
    .map((c) => h('th', {}, c)))), body));
  const more = h('button', { class: 'more', hidden: true }, 'More');
  main.append(more);
  const onReplay = async (d) => {
    try {
      const r = await client.replay(d.id);
      msg.textContent = `Delivery ${d.id}: ${r.requeued} requeued.`;
    } catch (err) {
      msg.replaceChildren(errorBox(err));
    }
  };
  let cursor = '';
  async function page() {
    more.disabled = true;
    try {
      const r = await client.deliveries(id, { status, limit: 100, cursor });
      body.append(...r.deliveries.map((d) => deliveryRow(d, onReplay)));
      cursor = r.next || '';
      more.hidden = !cursor;
      if (!r.deliveries.length && !body.rows.length) main.append(h('p', { class: 'muted' }, 'No deliveries' + (status ? ' ' + status : '') + '.'));
    } catch (err) {
      main.append(errorBox(err));
    }
    more.disabled = false;
  }
  more.onclick = page;
  await page();
  return () => {};
}

async function deliveryPage(id) {
  show(h('h1', {}, 'Delivery ', h('code', {}, id)));
  let r;
  try {
    r = await client.delivery(id);
  } catch (err) {
    main.append(errorBox(err));
    return () => {};
  }
  const d = r.delivery;
  const msg = h('p', { class: 'muted' });
  const replay = h('button', {
    class: 'primary',
    onclick: async () => {
      replay.disabled = true;
      try {
        const res = await client.replay(id);
        msg.textContent = `${res.requeued} requeued: the dispatcher sends it again, after this user's earlier deliveries.`;
      } catch (err) {
        msg.replaceChildren(errorBox(err));
      }
      replay.disabled = false;
    },
  }, 'Replay');
  main.append(
    fields([['status', statusBadge(d.status)], ['endpoint', link('#/endpoints/' + encodeURIComponent(d.endpoint_id), d.endpoint_id)],
      ['event', h('code', {}, d.event_id)], ['type', d.event_type], ['user', d.user_id ? userLink(d.user_id) : ''], ['seq', d.seq],
      ['attempts', d.attempts], ['next attempt', time(d.next_attempt_at)], ['last error', d.last_error],
      ['superseded by', d.superseded_by], ['created', time(d.created_at)], ['delivered', time(d.delivered_at)]]),
    h('div', { class: 'toolbar' }, replay), msg,
    h('h2', {}, 'Attempts'),
    table(['#', 'At', 'Status code', 'Latency', 'Error', 'Response (first 1 KiB)'], (r.attempts || []).map((a) => h('tr', {},
      h('td', { class: 'num' }, a.n), h('td', {}, time(a.at)), h('td', { class: 'num' }, a.status_code || ''),
      h('td', { class: 'num' }, a.latency_ms !== undefined ? a.latency_ms + ' ms' : ''), h('td', {}, a.error || ''),
      h('td', {}, a.response_body ? h('pre', {}, a.response_body) : '')))));
  if (!(r.attempts || []).length) main.append(h('p', { class: 'muted' }, 'No attempt yet.'));
  return () => {};
}

// ---- routing and sign-in ---------------------------------------------

async function route() {
  cleanup();
  cleanup = () => {};
  setLive('');
  const { path, q } = params();
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', path.startsWith(a.getAttribute('href').slice(1)));
  }
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let view;
  switch (parts[0]) {
    case 'users': view = parts[1] ? userPage(parts[1]) : usersPage(q); break;
    case 'events': view = eventsPage(q); break;
    case 'endpoints': view = parts[1] ? endpointPage(parts[1], q) : endpointsPage(); break;
    case 'deliveries': view = deliveryPage(parts[1] || ''); break;
    default: go('/users'); return;
  }
  const token = {};
  route.current = token;
  const stop = await view;
  // The page changed while this one loaded: end what it started.
  if (route.current !== token) stop();
  else cleanup = stop;
}

function signIn(err) {
  const form = document.getElementById('sign-in').content.firstElementChild.cloneNode(true);
  const p = form.querySelector('.error');
  if (err) {
    p.hidden = false;
    p.textContent = err;
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    start(form.elements.key.value.trim());
  });
  for (const id of ['nav', 'sign-out']) document.getElementById(id).hidden = true;
  document.getElementById('app-name').textContent = '';
  show(form);
  form.elements.key.focus();
}

async function start(key) {
  if (!key) return signIn();
  const c = new Client(location.origin, key);
  let app;
  try {
    app = await c.app();
  } catch (err) {
    sessionStorage.removeItem(KEY);
    return signIn(err instanceof APIError && err.status === 401 ? 'That key is not valid (or was revoked).' : String(err.message || err));
  }
  sessionStorage.setItem(KEY, key);
  client = c;
  document.getElementById('app-name').textContent = app.name;
  for (const id of ['nav', 'sign-out']) document.getElementById(id).hidden = false;
  window.onhashchange = route;
  route();
}

document.getElementById('sign-out').addEventListener('click', () => {
  cleanup();
  cleanup = () => {};
  setLive('');
  client = null;
  window.onhashchange = null;
  sessionStorage.removeItem(KEY);
  signIn();
});

start(sessionStorage.getItem(KEY) || '');
