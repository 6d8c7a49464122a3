// A small graphql-transport-ws client: one WebSocket for the page, subscriptions over it.
//
// Messages: connection_init/connection_ack, ping/pong, subscribe, next, error, complete.
// The socket opens on the first subscription, is closed when none is left, and reconnects
// with backoff (resubscribing) when it drops.

const PROTOCOL = "graphql-transport-ws";
const NO_RETRY_CODES = new Set([4400, 4401, 4403, 4406, 4429]);

export class LiveClient {
  /** ``params()`` gives the connection_init payload; ``onState(text)`` reports the socket. */
  constructor({ url, params, onState }) {
    this.url = url;
    this.params = params;
    this.onState = onState;
    this.socket = null;
    this.acknowledged = false;
    this.operations = new Map();
    this.nextId = 0;
    this.retries = 0;
    this.retryTimer = null;
  }

  /** Start a subscription; returns a function that stops it. */
  subscribe(query, variables, sink) {
    this.nextId += 1;
    const id = String(this.nextId);
    this.operations.set(id, { query, variables, sink });
    if (!this.socket) this.connect();
    else if (this.acknowledged) this.sendSubscribe(id);
    return () => this.stop(id);
  }

  /** Reconnect now, e.g. with a new token; active subscriptions start again. */
  restart() {
    if (!this.socket) return;
    this.drop();
    this.connect();
  }

  /** Complete every subscription and close the socket (the page is going away). */
  close() {
    for (const id of [...this.operations.keys()]) this.stop(id);
  }

  stop(id) {
    if (!this.operations.delete(id)) return;
    if (this.acknowledged) this.send({ id, type: "complete" });
    if (this.operations.size === 0) {
      this.drop();
      this.onState("idle");
    }
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.onState("connecting");
    const socket = new WebSocket(this.url, PROTOCOL);
    this.socket = socket;
    this.acknowledged = false;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "connection_init", payload: this.params() }));
    });
    socket.addEventListener("message", (event) => this.receive(socket, event.data));
    socket.addEventListener("close", (event) => this.closed(socket, event));
  }

  receive(socket, text) {
    if (socket !== this.socket) return;
    const message = JSON.parse(text);
    const operation = this.operations.get(message.id);
    switch (message.type) {
      case "connection_ack":
        this.acknowledged = true;
        this.retries = 0;
        this.onState("connected");
        for (const id of this.operations.keys()) this.sendSubscribe(id);
        break;
      case "ping":
        this.send({ type: "pong" });
        break;
      case "next":
        operation?.sink.next(message.payload);
        break;
      case "error":
        this.operations.delete(message.id);
        operation?.sink.error(message.payload);
        break;
      case "complete":
        this.operations.delete(message.id);
        operation?.sink.complete?.();
        break;
      default:
        break;
    }
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.acknowledged = false;
    if (this.operations.size === 0) return;
    if (NO_RETRY_CODES.has(event.code)) {
      this.onState(`closed: ${event.reason || event.code}`);
      for (const { sink } of this.operations.values()) {
        sink.error([{ message: event.reason || "connection refused", extensions: { code: `WS_${event.code}` } }]);
      }
      this.operations.clear();
      return;
    }
    const delay = Math.min(10_000, 500 * 2 ** this.retries);
    this.retries += 1;
    this.onState(`reconnecting in ${Math.round(delay / 1000)} s`);
    this.retryTimer = setTimeout(() => {
      for (const { sink } of this.operations.values()) sink.reconnected?.();
      this.connect();
    }, delay);
  }

  drop() {
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    this.socket = null;
    this.acknowledged = false;
    socket?.close(1000, "done");
  }

  sendSubscribe(id) {
    const { query, variables } = this.operations.get(id);
    this.send({ id, type: "subscribe", payload: { query, variables } });
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }
}
