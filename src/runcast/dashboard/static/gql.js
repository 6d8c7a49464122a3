// GraphQL over HTTP (POST /graphql) and the token the page sends with every request.

const TOKEN_KEY = "runcast.token";
const ENDPOINT = "/graphql";

/** The token of this tab ("" when none). */
export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

/** Keep ``token`` for this tab only (sessionStorage); "" forgets it. */
export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** The Authorization value for the token: a bare token is sent as a Bearer token. */
export function authorization() {
  const token = getToken().trim();
  if (!token) return null;
  return /\s/.test(token) ? token : `Bearer ${token}`;
}

/** A GraphQL error as the page shows it: the gateway's message and extensions.code. */
export class GraphQLError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }

  static from(error) {
    return new GraphQLError(error?.message ?? "Unknown error", error?.extensions?.code ?? "ERROR");
  }
}

/** POST an operation; the whole answer, {data, errors}. Transport failures throw GraphQLError. */
export async function execute(query, variables = {}) {
  const headers = {
    "content-type": "application/json",
    accept: "application/graphql-response+json, application/json",
  };
  const auth = authorization();
  if (auth) headers.authorization = auth;
  let response;
  try {
    response = await fetch(ENDPOINT, {
      method: "POST", headers, body: JSON.stringify({ query, variables }),
    });
  } catch (error) {
    throw new GraphQLError(`The gateway cannot be reached (${error.message})`, "NETWORK_ERROR");
  }
  try {
    return await response.json();
  } catch {
    throw new GraphQLError(`The gateway answered HTTP ${response.status}`, `HTTP_${response.status}`);
  }
}

/** The data of an answer; throws the first error when there is no data at all. */
export async function query(document, variables) {
  const answer = await execute(document, variables);
  if (!answer.data && answer.errors?.length) throw GraphQLError.from(answer.errors[0]);
  return answer;
}

/** The data of a mutation; throws its first error. */
export async function mutate(document, variables) {
  const answer = await execute(document, variables);
  if (answer.errors?.length) throw GraphQLError.from(answer.errors[0]);
  return answer.data;
}

/** The fields every view reads of a run in a list. */
export const RUN_ROW_FIELDS = "instanceId status rawStatus createdAt startedAt endedAt";

/** The fields the run view reads. */
export const RUN_FIELDS = `instanceId workflowId workflowVersion status rawStatus isTerminal
  input output error createdAt startedAt endedAt
  wait { reason eventType until }
  steps { name type status attempts error startedAt endedAt }`;
