// Drives the README's Apollo Client setup (`client`): a list, then runStatus updates it.
import { gql } from '@apollo/client';
import { requests } from './readme/preamble.mjs';
import { closeInput, firstMatching, nextInput, report } from './lib.mjs';

const { RUNCAST_WORKFLOW: workflowId, RUNCAST_INSTANCE: instanceId } = process.env;
const RUNS = gql`
  query Runs($workflowId: ID!) {
    workflow(id: $workflowId) { id runs { edges { node { id instanceId status } } } }
  }
`;
const RUN_STATUS = gql`
  subscription RunStatus($workflowId: ID!, $instanceId: ID!) {
    runStatus(workflowId: $workflowId, instanceId: $instanceId) { status run { id status } }
  }
`;
const statusOf = (data) =>
  data.workflow.runs.edges.find((edge) => edge.node.instanceId === instanceId)?.node.status;

const list = client.watchQuery({ query: RUNS, variables: { workflowId } });
const listed = await firstMatching(list, (result) => result.data?.workflow);
const listRequests = requests.length;
report({ stage: 'listed', status: statusOf(listed.data), requests: listRequests });
const updates = client.subscribe({ query: RUN_STATUS, variables: { workflowId, instanceId } });
let first = true;
const finished = firstMatching(updates, (result) => {
  if (first) report({ stage: 'subscribed', status: result.data.runStatus.status });
  first = false;
  return result.data.runStatus.status === 'COMPLETE';
});
const shown = firstMatching(list, (result) => statusOf(result.data) === 'COMPLETE');
await nextInput();
await finished;
const updated = await shown;
report({ stage: 'updated', status: statusOf(updated.data), requests: requests.length,
         methods: requests.map((r) => r.method) });
closeInput();
client.stop();
process.exit(0);
