// subscriptions-transport-ws (the legacy graphql-ws subprotocol) sends every operation over
// the socket: an introspection query, a query, a mutation and a subscription to completion.
// Usage: node legacy_ws.mjs GRAPHQL_URL
// Reports {introspection, workflows, triggered, statuses}.
import { SubscriptionClient } from 'subscriptions-transport-ws';
import WebSocket from 'ws';
import { report, wsUrl } from './lib.mjs';

const [url] = process.argv.slice(2);
const client = new SubscriptionClient(wsUrl(url), { reconnect: false }, WebSocket);

function all(request) {
  return new Promise((resolve, reject) => {
    const results = [];
    client.request(request).subscribe({
      next: (result) => (result.errors ? reject(new Error(JSON.stringify(result.errors))) : results.push(result.data)),
      error: (error) => reject(new Error(JSON.stringify(error))),
      complete: () => resolve(results),
    });
  });
}

const [introspection] = await all({ query: '{ __schema { queryType { name } } }' });
const [workflows] = await all({ query: '{ workflows { id } }' });
const [triggered] = await all({
  query: 'mutation { triggerRun(workflowId: "three-steps", input: {orderId: "L"}) { id instanceId } }',
});
const updates = await all({
  query: 'subscription ($i: ID!) { runStatus(workflowId: "three-steps", instanceId: $i) { status } }',
  variables: { i: triggered.triggerRun.instanceId },
});
report({
  introspection,
  workflows: workflows.workflows.map((w) => w.id),
  triggered: triggered.triggerRun,
  statuses: updates.map((u) => u.runStatus.status),
});
client.close();
