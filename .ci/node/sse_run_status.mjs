// The graphql-sse client (distinct connections mode) follows runStatus to completion.
// Usage: node sse_run_status.mjs GRAPHQL_URL WORKFLOW_ID INSTANCE_ID [AUTHORIZATION]
// Reports {stage: "subscribed"} on the first message, then waits for a line on stdin (the
// test sends the run its event), then {stage: "complete", statuses, runIds} when the
// stream has completed; or {stage: "error", error} when the server refuses.
import { createClient } from 'graphql-sse';
import { closeInput, nextInput, report } from './lib.mjs';

const [url, workflowId, instanceId, authorization] = process.argv.slice(2);
const client = createClient({
  url,
  headers: authorization ? { Authorization: authorization } : {},
  retryAttempts: 0,
});
const statuses = [];
const runIds = [];
try {
  const results = client.iterate({
    query: `subscription ($w: ID!, $i: ID!) {
      runStatus(workflowId: $w, instanceId: $i) { status run { id status output } }
    }`,
    variables: { w: workflowId, i: instanceId },
  });
  for await (const result of results) {
    if (result.errors) {
      report({ stage: 'error', error: result.errors[0] });
      break;
    }
    statuses.push(result.data.runStatus.status);
    runIds.push(result.data.runStatus.run.id);
    if (statuses.length === 1) {
      report({ stage: 'subscribed', status: statuses[0] });
      await nextInput();
    }
  }
  if (statuses.length) report({ stage: 'complete', statuses, runIds });
} finally {
  closeInput();
  client.dispose();
}
