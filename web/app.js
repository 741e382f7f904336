// roomcast demo page: follow one room with EventSource, publish with fetch.
//
// The stream is GET /api/v1/events?room_id=ROOM: one SSE message per event,
// "data:" is the event's JSON, "id:" its id. The browser reconnects by itself
// (the server sends "retry: 3000") and then sends Last-Event-ID, so events
// published while it was away are replayed, on whichever gateway it reaches.
//
// With the gateways on --auth jwt --auth-cookie roomcast_token (scripts/run
// with ROOMCAST_AUTH=jwt), EventSource cannot send headers: the page takes a
// token from its URL (#token=...), keeps it in that cookie, which the browser
// sends with the stream, and uses it as the publish token too.
'use strict';

const MAX_SHOWN = 200;

const $ = (id) => document.getElementById(id);
const ui = {
  roomForm: $('room-form'), room: $('room'), currentRoom: $('current-room'),
  state: $('state'), lastId: $('last-id'), events: $('events'), empty: $('empty'),
  sendForm: $('send-form'), author: $('author'), text: $('text'), send: $('send'),
  token: $('token'), sendStatus: $('send-status'),
};

let source = null;
let room = null;

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

// Follows room: closes the previous stream and opens a new one (live from now).
function join(newRoom) {
  if (source) source.close();
  room = newRoom;
  ui.currentRoom.textContent = room;
  ui.lastId.textContent = '–';
  ui.events.replaceChildren();
  ui.empty.hidden = false;
  const url = new URL(location.href);
  url.searchParams.set('room', room);
  history.replaceState(null, '', url);

  setState('connecting');
  source = new EventSource('/api/v1/events?room_id=' + encodeURIComponent(room));
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
      ui.events.replaceChildren();
      addNotice(`stream reset (${event.reason}): earlier events are not shown`);
      return;
    }
    addEvent(msg.lastEventId, event);
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

function addItem(li) {
  ui.empty.hidden = true;
  ui.events.append(li);
  while (ui.events.childElementCount > MAX_SHOWN) ui.events.firstElementChild.remove();
  ui.events.scrollTop = ui.events.scrollHeight; // newest at the bottom, in view
}

function addEvent(id, event) {
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
  addItem(li);
}

function addNotice(text) {
  const li = document.createElement('li');
  li.className = 'notice';
  li.textContent = text;
  addItem(li);
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

ui.sendForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.text.value.trim();
  if (text && room) send(text);
});

ui.room.value = new URLSearchParams(location.search).get('room') || ui.room.value;
join(ui.room.value);
