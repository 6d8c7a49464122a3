// Drives the README's urql setup (`client`): a list, then runStatus updates it in Graphcache.
import { gql as urqlGql } from '@urql/core';
import { requests } from './readme/preamble.mjs';
import { closeInput, nextInput, report } from './lib.mjs';

const { RUNCAST_WORKFLOW: workflowId, RUNCAST_INSTANCE: instanceId } = process.env;
const RUNS = urqlGql`
  query Runs($workflowId: ID!) {
    workflow(id: $workflowId) { id runs { edges { node { id instanceId status } } } }
  }
`;
const RUN_STATUS = urqlGql`
  subscription RunStatus($workflowId: ID!, $instanceId: ID!) {
    runStatus(workflowId: $workflowId, instanceId: $instanceId) { status run { id status } }
  }
`;
const statusOf = (data) =>
  data?.workflow?.runs.edges.find((edge) => edge.node.instanceId === instanceId)?.node.status;

let listed;
let shownResolve;
const shown = new Promise((resolve) => (shownResolve = resolve));
const listed1 = new Promise((resolve) => (listed = resolve));
client.query(RUNS, { workflowId }).subscribe((result) => {
  if (result.error) throw result.error;
  const status = statusOf(result.data);
  if (status) listed(status);
  if (status === 'COMPLETE') shownResolve(status);
});
report({ stage: 'listed', status: await listed1, requests: requests.length });
let first = true;
const finished = new Promise((resolve, reject) => {
  client.subscription(RUN_STATUS, { workflowId, instanceId }).subscribe((result) => {
    if (result.error) reject(result.error);
    const status = result.data?.runStatus.status;
    if (first && status) report({ stage: 'subscribed', status });
    first = false;
    if (status === 'COMPLETE') resolve();
  });
});
await nextInput();
await finished;
report({ stage: 'updated', status: await shown, requests: requests.length,
         methods: requests.map((r) => r.method) });
closeInput();
process.exit(0);
