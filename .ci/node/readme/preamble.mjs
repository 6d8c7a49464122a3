// Run before a README client setup: what a browser has and Node 20 lacks (a global
// WebSocket), and a record of every HTTP request the setup makes (to show there is no refetch).
import WebSocket from 'ws';

globalThis.WebSocket ??= WebSocket;
export const requests = [];
const realFetch = globalThis.fetch;
globalThis.fetch = (url, init = {}) => {
  requests.push({ method: init.method || 'GET', url: String(url) });
  return realFetch(url, init);
};
