-- wrk script: POST one compute order per request and count non-2xx responses.
-- BENCH_API_KEY is the tenant key; empty sends no Authorization header.

wrk.method = "POST"
wrk.body = '{"resource_type": "compute", "quantity": 1}'
wrk.headers["Content-Type"] = "application/json"

local key = os.getenv("BENCH_API_KEY") or ""
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

-- Print one JSON line that bench/run.py parses; latencies are in microseconds.
function done(summary, latency, requests)
  local non2xx_total = 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + thread:get("non2xx")
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "non2xx": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout, non2xx_total,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
