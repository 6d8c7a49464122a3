-- The request of one wrk run of bench/http.py, and a machine-readable summary.
--
-- The request comes from environment variables so one script serves every case:
--   BENCH_METHOD        GET (default) or POST
--   BENCH_BODY          the request body (POST only)
--   BENCH_CONTENT_TYPE  the body's media type (default application/json)
-- done() prints one line starting with BENCH_RESULT followed by a JSON object
-- (times in microseconds), which bench/http.py parses.

wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers["Accept"] = "application/json"

local body = os.getenv("BENCH_BODY")
if body ~= nil and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "BENCH_RESULT {\"requests\": %.0f, \"duration_us\": %.0f, \"p50_us\": %.0f, "
      .. "\"p90_us\": %.0f, \"p99_us\": %.0f, \"mean_us\": %.1f, \"max_us\": %.0f, "
      .. "\"errors_connect\": %.0f, \"errors_read\": %.0f, \"errors_write\": %.0f, "
      .. "\"errors_status\": %.0f, \"errors_timeout\": %.0f}\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
