// Shared by the client scripts: JSON lines out, JSON lines in, and a fetch that counts.
import readline from 'node:readline';

const input = readline.createInterface({ input: process.stdin });
const waiting = [];
const received = [];
input.on('line', (line) => {
  const message = JSON.parse(line);
  const next = waiting.shift();
  if (next) next(message);
  else received.push(message);
});

/** Print one JSON object on its own line (the test reads these). */
export function report(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** The next JSON line the test writes to stdin. */
export function nextInput() {
  if (received.length) return Promise.resolve(received.shift());
  return new Promise((resolve) => waiting.push(resolve));
}

/** Stop reading stdin, so that the script can exit. */
export function closeInput() {
  input.close();
}

/** A fetch that records every request it makes (method, URL, parsed body). */
export function recordingFetch() {
  const requests = [];
  const fetcher = async (url, init = {}) => {
    const body = typeof init.body === 'string' ? JSON.parse(init.body) : null;
    requests.push({ method: init.method || 'GET', url: String(url), body });
    return fetch(url, init);
  };
  return { fetch: fetcher, requests };
}

/** The ws:// URL of an http:// GraphQL URL. */
export function wsUrl(httpUrl) {
  return httpUrl.replace(/^http/, 'ws');
}

/** Resolve when `predicate(value)` holds for a value an Observable-like emits. */
export function firstMatching(observable, predicate) {
  return new Promise((resolve, reject) => {
    let done = false;
    const subscription = observable.subscribe({
      next(value) {
        if (!done && predicate(value)) {
          done = true;
          // A value can arrive during subscribe(), before `subscription` is assigned.
          queueMicrotask(() => subscription.unsubscribe());
          resolve(value);
        }
      },
      error: reject,
    });
  });
}
