// Drives the README's Relay setup (`environment`) with artifacts relay-compiler made from
// Relay.js (RUNCAST_RELAY_ARTIFACTS): a list, then runStatus updates the same records.
import { pathToFileURL } from 'node:url';
import { createOperationDescriptor, fetchQuery as relayFetchQuery, requestSubscription } from 'relay-runtime';
import { requests } from './readme/preamble.mjs';
import { closeInput, nextInput, report } from './lib.mjs';

const { RUNCAST_WORKFLOW: workflowId, RUNCAST_INSTANCE: instanceId } = process.env;
const artifact = async (name) =>
  (await import(pathToFileURL(`${process.env.RUNCAST_RELAY_ARTIFACTS}/${name}.graphql.js`))).default;
const RunsQuery = await artifact('RelayRunsQuery');
const RunStatusSubscription = await artifact('RelayRunStatusSubscription');

await relayFetchQuery(environment, RunsQuery, { workflowId }).toPromise();
const operation = createOperationDescriptor(RunsQuery, { workflowId });
environment.retain(operation);
const statusNow = () =>
  environment
    .lookup(operation.fragment)
    .data.workflow.runs.edges.find((edge) => edge.node.instanceId === instanceId)?.node.status;
report({ stage: 'listed', status: statusNow(), requests: requests.length });
let first = true;
const finished = new Promise((resolve, reject) => {
  requestSubscription(environment, {
    subscription: RunStatusSubscription,
    variables: { workflowId, instanceId },
    onNext: (data) => {
      if (first) report({ stage: 'subscribed', status: data.runStatus.status });
      first = false;
    },
    onError: reject,
    onCompleted: resolve,
  });
});
await nextInput();
await finished;
report({ stage: 'updated', status: statusNow(), requests: requests.length,
         methods: requests.map((r) => r.method) });
closeInput();
process.exit(0);
