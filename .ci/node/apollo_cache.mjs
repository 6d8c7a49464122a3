// Apollo Client's InMemoryCache normalizes runs by id: a runStatus message updates the
// run shown by an earlier list query, with no refetch.
// Usage: node apollo_cache.mjs GRAPHQL_URL WORKFLOW_ID INSTANCE_ID
// Reports {stage: "listed"}, {stage: "subscribed"} (then waits for a line on stdin, when the
// test has sent the run its event), and {stage: "updated", statuses, requests}.
import { ApolloClient, HttpLink, InMemoryCache, gql, split } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { closeInput, firstMatching, nextInput, recordingFetch, report, wsUrl } from './lib.mjs';

const [url, workflowId, instanceId] = process.argv.slice(2);
const recorder = recordingFetch();
const wsClient = createClient({ url: wsUrl(url), webSocketImpl: WebSocket });
const link = split(
  ({ query }) => getMainDefinition(query).operation === 'subscription',
  new GraphQLWsLink(wsClient),
  new HttpLink({ uri: url, fetch: recorder.fetch }),
);
const client = new ApolloClient({ link, cache: new InMemoryCache() });

const RUNS = gql`
  query Runs($workflowId: ID!) {
    workflow(id: $workflowId) { id runs(first: 20) { edges { node { id instanceId status } } } }
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
report({ stage: 'listed', status: statusOf(listed.data), requests: recorder.requests.length });

const updates = client.subscribe({ query: RUN_STATUS, variables: { workflowId, instanceId } });
const seen = [];
const finished = firstMatching(updates, (result) => {
  seen.push(result.data.runStatus.status);
  if (seen.length === 1) report({ stage: 'subscribed', status: seen[0] });
  return result.data.runStatus.status === 'COMPLETE';
});
const shown = firstMatching(list, (result) => statusOf(result.data) === 'COMPLETE');
await nextInput();
await finished;
const updated = await shown;
report({
  stage: 'updated',
  status: statusOf(updated.data),
  subscriptionStatuses: seen,
  requests: recorder.requests.map((request) => request.body?.operationName),
  networkStatus: updated.networkStatus,
});
closeInput();
await wsClient.dispose();
client.stop();
