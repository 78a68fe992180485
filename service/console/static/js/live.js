// Live lifecycle events from GET /integration/events/stream, read with fetch streaming so the token goes in
// the Authorization header (the browser's built-in SSE client cannot send one). Reconnects with back-off.

import { token } from './auth.js';

const listeners = new Set();
const stateListeners = new Set();
let stopper = null;
let current = 'off';

export function onEvent(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function onState(listener) {
  stateListeners.add(listener);
  listener(current);
  return () => stateListeners.delete(listener);
}

export function connected() {
  return current === 'connected';
}

function setState(value) {
  current = value;
  for (const listener of stateListeners) listener(value);
}

function dispatch(block) {
  const data = block.split('\n').filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).replace(/^ /, '')).join('\n');
  if (!data) return;
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return;
  }
  for (const listener of listeners) listener(event);
}

async function readStream(response, isStopped) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  while (!isStopped()) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let cut = buffer.indexOf('\n\n');
    while (cut >= 0) {
      dispatch(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      cut = buffer.indexOf('\n\n');
    }
  }
}

export function startLive() {
  if (stopper) return;
  let stopped = false;
  let controller = null;
  let delay = 1000;
  const isStopped = () => stopped;
  (async () => {
    while (!stopped) {
      controller = new AbortController();
      try {
        const response = await fetch('/integration/events/stream', {
          headers: { Authorization: `Bearer ${token()}`, Accept: 'text/event-stream' },
          cache: 'no-store', signal: controller.signal,
        });
        if (response.status === 401 || response.status === 403) {
          setState('forbidden');
          return;
        }
        if (response.ok && response.body) {
          setState('connected');
          delay = 1000;
          await readStream(response, isStopped);
        }
      } catch {
        // a dropped connection or an abort: reconnect below unless stopped
      }
      if (stopped) break;
      setState('disconnected');
      await new Promise((resolve) => { setTimeout(resolve, delay); });
      delay = Math.min(delay * 2, 15000);
    }
  })();
  stopper = () => {
    stopped = true;
    controller?.abort();
    setState('off');
  };
}

export function stopLive() {
  if (stopper) stopper();
  stopper = null;
}
