// Run the graphql-http server audit (GraphQL over HTTP spec) against a URL.
// Usage: node .ci/graphql_http_audit.mjs http://127.0.0.1:8000/graphql
// Prints one JSON object per audit result and a summary line; exits 1 on any
// error or warning, 0 otherwise. Needs `npm install --prefix .ci/node`.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, 'node', 'package.json'));
const { auditServer } = require('graphql-http');

const url = process.argv[2];
if (!url) {
  console.error('usage: node graphql_http_audit.mjs URL');
  process.exit(2);
}

const results = await auditServer({ url });
let errors = 0;
let warnings = 0;
for (const result of results) {
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    line.reason = result.reason;
    if (result.response) {
      line.httpStatus = result.response.status;
      try {
        line.body = await result.response.text();
      } catch {
        // body already read by the audit
      }
    }
  }
  if (result.status === 'error') errors += 1;
  if (result.status === 'warn') warnings += 1;
  console.log(JSON.stringify(line));
}
const notices = results.filter((r) => r.status === 'notice').length;
const ok = results.filter((r) => r.status === 'ok').length;
console.log(`graphql-http audit: ${ok} ok, ${notices} notices, ${warnings} warnings, ${errors} errors`);
process.exit(errors || warnings ? 1 : 0);
