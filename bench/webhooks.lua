-- wrk script for bench/webhooks.py: POST pre-signed single-event webhook bodies.
--
-- HMAC in Lua is impractical, so the benchmark writes a pool of signed bodies to the file named
-- by WEBHOOK_BODIES, one "<signature>\t<body>" per line. Thread i of T (T passed as the script's
-- argument) cycles through lines i, i+T, i+2T, ...: every request of a pass carries a distinct
-- event_id. Requests are formatted once in init, so the per-request cost is a table lookup.
-- done() prints one JSON line the benchmark parses.

local threads = {}
local requests = {}
local next_index = 0

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function init(args)
  local count = tonumber(args[1]) or 1
  local n = 0
  for line in io.lines(os.getenv("WEBHOOK_BODIES")) do
    if n % count == thread_index then
      local tab = line:find("\t", 1, true)
      requests[#requests + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["X-Closedloop-Signature"] = line:sub(1, tab - 1),
      }, line:sub(tab + 1))
    end
    n = n + 1
  end
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "non_2xx_3xx": %d, "latency_p50_us": %d, '
      .. '"latency_p99_us": %d, "latency_max_us": %d, "latency_mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout,
    e.status, latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
