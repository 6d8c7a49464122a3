// The graphql-yoga peer of bench/http.py: what a user writes with yoga over the engine's REST API.
// Usage: node server.mjs PORT ENGINE_URL
import { createServer } from "node:http";
import { createSchema, createYoga } from "graphql-yoga";

const [port, engineUrl] = process.argv.slice(2);

const typeDefs = /* GraphQL */ `
  scalar JSON
  type Run { instanceId: ID! status: String! output: JSON }
  type Query { run(workflowId: ID!, instanceId: ID!): Run }
  type Mutation { triggerRun(workflowId: ID!, input: JSON): Run! }
`;

async function engineJson(response) {
  if (!response.ok) throw new Error(`engine answered HTTP ${response.status}`);
  return response.json();
}

function asRun(body) {
  return { ...body, status: String(body.status).toUpperCase() };
}

const resolvers = {
  Query: {
    run: async (_, { workflowId, instanceId }) => {
      const url = `${engineUrl}/api/v1/workflows/${encodeURIComponent(workflowId)}/runs/${encodeURIComponent(instanceId)}`;
      return asRun(await engineJson(await fetch(url)));
    },
  },
  Mutation: {
    triggerRun: async (_, { workflowId, input }) => {
      const url = `${engineUrl}/api/v1/workflows/${encodeURIComponent(workflowId)}/runs`;
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ input }),
      });
      return asRun(await engineJson(response));
    },
  },
};

const yoga = createYoga({
  schema: createSchema({ typeDefs, resolvers }),
  graphiql: false,
  logging: false,
});

createServer(yoga).listen(Number(port), "127.0.0.1", () => {
  console.log(`yoga listening on ${port}`);
});
