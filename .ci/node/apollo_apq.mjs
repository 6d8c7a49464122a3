// Apollo's persisted-queries link against the gateway, hashes sent by POST and by GET.
// Usage: node apollo_apq.mjs GRAPHQL_URL
// Reports, per mode, the data of the same query run twice and every request made:
// {mode, first, second, requests: [{method, hasQuery}]}.
import { createHash } from 'node:crypto';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { recordingFetch, report } from './lib.mjs';

const [url] = process.argv.slice(2);
const sha256 = (text) => createHash('sha256').update(text).digest('hex');

async function twice(mode) {
  const recorder = recordingFetch();
  const link = new PersistedQueryLink({ sha256, useGETForHashedQueries: mode === 'get' }).concat(
    new HttpLink({ uri: url, fetch: recorder.fetch }),
  );
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  // A query of its own per mode, so that each mode starts with a hash the gateway lacks.
  const query = gql(`query Workflows_${mode} { workflows { id } }`);
  const first = await client.query({ query, fetchPolicy: 'network-only' });
  const second = await client.query({ query, fetchPolicy: 'network-only' });
  const requests = recorder.requests.map((request) => ({
    method: request.method,
    hasQuery: request.body ? 'query' in request.body : new URL(request.url).searchParams.has('query'),
  }));
  report({ mode, first: first.data, second: second.data, requests });
  client.stop();
}

await twice('post');
await twice('get');
