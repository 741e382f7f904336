// roomcast demo page: follow one room with EventSource, publish with fetch.
//
// The stream is GET /api/v1/events?room_id=ROOM&rewind=50: it starts with the
// room's last 50 events (and the global ones), then goes live. One SSE message
// per event, "data:" is the event's JSON, "id:" its id. The browser reconnects
// by itself (the server sends "retry: 3000") and then sends Last-Event-ID,
// which wins over rewind: the stream resumes where it was, on whichever
// gateway it reaches, without the 50 again.
//
// "Load older" pages back with GET /api/v1/rooms/ROOM/events?before=ID
// (newest first, 50 a page) from the oldest event shown. Live events may come
// in while a page loads: every event is kept once, by id, and the list stays
// sorted by the gseq in the id ("<epoch hex>-<gseq decimal>").
//
// With the gateways on --auth jwt --auth-cookie roomcast_token (scripts/run
// with ROOMCAST_AUTH=jwt), EventSource cannot send headers: the page takes a
// token from its URL (#token=...), keeps it in that cookie, which the browser
// sends with the stream and the history requests, and uses it as the publish
// token too.
'use strict';

const MAX_SHOWN = 200; // live events beyond it push the oldest out (pages loaded on purpose stay)
const PAGE = 50;

const $ = (id) => document.getElementById(id);
const ui = {
  roomForm: $('room-form'), room: $('room'), currentRoom: $('current-room'),
  state: $('state'), lastId: $('last-id'), events: $('events'), empty: $('empty'),
  older: $('load-older'), olderStatus: $('older-status'),
  sendForm: $('send-form'), author: $('author'), text: $('text'), send: $('send'),
  token: $('token'), sendStatus: $('send-status'),
};

let source = null;
let room = null;
let shown = new Map(); // event id -> its <li>, each event once
let keep = MAX_SHOWN;
let lastSeq = 0n; // the highest gseq shown: where a notice goes
let historyDone = false; // the history API said there is nothing older
let loading = null; // the AbortController of the page being loaded

// #token=JWT: into the cookie the gateways read (--auth-cookie), and out of the URL
(function takeToken() {
  const m = /[#&]token=([A-Za-z0-9._~-]+)/.exec(location.hash);
  if (!m) return;
  document.cookie = 'roomcast_token=' + m[1] + '; path=/; SameSite=Strict';
  ui.token.value = m[1];
  history.replaceState(null, '', location.pathname + location.search);
})();

function setState(state) {
  ui.state.textContent = state;
  ui.state.dataset.state = state;
}

// The gseq of an id "<epoch hex>-<gseq decimal>", or null when it is not one.
function seqOf(id) {
  const m = /^[0-9a-f]+-([0-9]+)$/.exec(id || '');
  return m ? BigInt(m[1]) : null;
}

// Empties the list (a new room, or a stream.reset) and forgets what was shown.
function clearShown() {
  if (loading) loading.abort();
  loading = null;
  ui.events.replaceChildren();
  shown = new Map();
  keep = MAX_SHOWN;
  lastSeq = 0n;
  historyDone = false;
  ui.olderStatus.textContent = '';
  refresh();
}

// The empty hint and the "load older" button follow what the list holds.
function refresh() {
  ui.empty.hidden = ui.events.childElementCount > 0;
  ui.older.hidden = historyDone || shown.size === 0;
  ui.older.disabled = loading !== null;
}

// Follows room: closes the previous stream and opens a new one, which starts
// with the room's last PAGE events.
function join(newRoom) {
  if (source) source.close();
  room = newRoom;
  ui.currentRoom.textContent = room;
  ui.lastId.textContent = '–';
  clearShown();
  const url = new URL(location.href);
  url.searchParams.set('room', room);
  history.replaceState(null, '', url);

  setState('connecting');
  source = new EventSource('/api/v1/events?room_id=' + encodeURIComponent(room) + '&rewind=' + PAGE);
  source.onopen = () => setState('open');
  source.onerror = () => {
    // CONNECTING: the browser retries by itself; CLOSED: it gave up (e.g. a 4xx)
    setState(source.readyState === EventSource.CONNECTING ? 'reconnecting' : 'closed');
  };
  // the token ran out or was revoked: the browser reconnects, and a token no
  // longer valid gets 401 (never an anonymous stream): EventSource then stops
  for (const end of ['stream.expired', 'stream.revoked']) {
    source.addEventListener(end, () => addNotice(`${end}: reconnecting needs a valid token (reload with #token=...)`));
  }
  source.onmessage = (msg) => {
    let event;
    try {
      event = JSON.parse(msg.data);
    } catch (e) {
      return;
    }
    ui.lastId.textContent = msg.lastEventId || '–';
    if (event.type === 'stream.reset') {
      // the server could not replay what was missed: start over from here
      clearShown();
      addNotice(`stream reset (${event.reason}): earlier events are not shown`);
      return;
    }
    addEvent(msg.lastEventId, event, true);
  };
}

function describe(event) {
  if (event.message && typeof event.message.text === 'string') {
    const who = event.message.author ? event.message.author + ': ' : '';
    return who + event.message.text;
  }
  const rest = Object.assign({}, event);
  delete rest.type;
  delete rest.room_id;
  return JSON.stringify(rest);
}

// Puts li at its place by seq: after every item with a seq not above it
// (a notice carries the seq of the last event before it). Live events land
// at the end, so the search starts there.
function place(li, seq) {
  li.dataset.seq = String(seq);
  let after = ui.events.lastElementChild;
  while (after && BigInt(after.dataset.seq) > seq) after = after.previousElementSibling;
  const list = ui.events;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 8;
  const height = list.scrollHeight;
  if (after) after.after(li); else list.prepend(li);
  if (li !== list.lastElementChild) list.scrollTop += list.scrollHeight - height; // what was in view stays in view
  else if (atBottom) list.scrollTop = list.scrollHeight; // newest at the bottom, in view
}

// Shows an event once; live ones may push the oldest out of the list.
function addEvent(id, event, live) {
  if (shown.has(id)) return;
  const parsed = seqOf(id);
  const seq = parsed === null ? lastSeq : parsed;
  const li = document.createElement('li');
  li.className = event.room_id ? 'event' : 'event global';
  li.dataset.id = id;
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = `${id} · ${event.type}${event.room_id ? '' : ' · global'}`;
  const body = document.createElement('span');
  body.className = 'body';
  body.textContent = describe(event);
  li.append(meta, body);
  place(li, seq);
  shown.set(id, li);
  if (seq > lastSeq) lastSeq = seq;
  while (live && ui.events.childElementCount > keep) {
    const first = ui.events.firstElementChild;
    if (first.dataset.id) shown.delete(first.dataset.id);
    first.remove();
  }
  refresh();
}

function addNotice(text) {
  const li = document.createElement('li');
  li.className = 'notice';
  li.textContent = text;
  place(li, lastSeq);
  refresh();
}

// The id of the oldest event shown: the next page is before it.
function oldestId() {
  for (let li = ui.events.firstElementChild; li; li = li.nextElementSibling) {
    if (li.dataset.id && seqOf(li.dataset.id) !== null) return li.dataset.id;
  }
  return null;
}

// Loads the page before the oldest event shown and puts its events above.
// The stream's cookie is sent with it, so it reads what the stream may read.
async function loadOlder() {
  const before = oldestId();
  if (!before || loading) return;
  const forRoom = room;
  const ctl = new AbortController();
  loading = ctl;
  ui.olderStatus.textContent = 'loading…';
  refresh();
  try {
    const url = `/api/v1/rooms/${encodeURIComponent(forRoom)}/events?before=${encodeURIComponent(before)}`
      + `&limit=${PAGE}&order=desc`;
    const res = await fetch(url, { signal: ctl.signal, credentials: 'same-origin' });
    const reply = await res.json().catch(() => ({}));
    if (ctl.signal.aborted) return;
    if (!res.ok || !Array.isArray(reply.events)) {
      const why = reply.error ? reply.error.message : res.statusText;
      ui.olderStatus.textContent = `could not load older events: ${res.status} ${why}`;
      return;
    }
    for (const { id, event } of reply.events) addEvent(id, event, false);
    keep = Math.max(keep, ui.events.childElementCount);
    historyDone = reply.next === null || reply.next === undefined;
    ui.olderStatus.textContent = historyDone ? 'no older events' : '';
  } catch (e) {
    if (!ctl.signal.aborted) ui.olderStatus.textContent = `could not load older events: ${e.message}`;
  } finally {
    if (loading === ctl) loading = null;
    refresh();
  }
}

async function send(text) {
  const event = {
    type: 'message.created',
    room_id: room,
    message: { text, author: ui.author.value.trim() || 'guest' },
  };
  const headers = { 'Content-Type': 'application/json' };
  if (ui.token.value) headers.Authorization = 'Bearer ' + ui.token.value;
  ui.send.disabled = true;
  try {
    const res = await fetch('/api/v1/events', { method: 'POST', headers, body: JSON.stringify(event) });
    const reply = await res.json().catch(() => ({}));
    if (res.ok) {
      ui.sendStatus.textContent = `sent as ${reply.id}`;
      ui.text.value = '';
    } else {
      const why = reply.error ? reply.error.message : res.statusText;
      ui.sendStatus.textContent = `not sent: ${res.status} ${why}`;
    }
  } catch (e) {
    ui.sendStatus.textContent = `not sent: ${e.message}`;
  } finally {
    ui.send.disabled = false;
    ui.text.focus();
  }
}

ui.roomForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const wanted = ui.room.value.trim();
  if (wanted && wanted !== room) join(wanted);
});

ui.older.addEventListener('click', loadOlder);

ui.sendForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.text.value.trim();
  if (text && room) send(text);
});

ui.room.value = new URLSearchParams(location.search).get('room') || ui.room.value;
join(ui.room.value);
