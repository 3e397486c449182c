-- wrk script: replays pre-signed, unique POST /api/v1/cashbacks requests (bench/api_cashbacks.py).
--
--   wrk -s bench/wrk_replay.lua ... http://127.0.0.1:PORT -- REQUESTS_FILE KEY_ID NTHREADS
--
-- REQUESTS_FILE has one request a line: "timestamp<TAB>signature<TAB>json body". Thread k (0-based)
-- takes lines k, k+N, k+2N, ...: disjoint slices, so no signature (and no partner_ref) is ever
-- sent twice. A thread that runs out sends nothing new: it re-sends its last request, which the
-- replay guard refuses (401) and this script reports as "exhausted" (and the bench fails).

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   local path, key_id, nthreads = args[1], args[2], tonumber(args[3])
   requests = {}
   local line_no = 0
   for line in io.lines(path) do
      if line_no % nthreads == id then
         local ts, sig, body = line:match("^([^\t]+)\t([^\t]+)\t(.+)$")
         requests[#requests + 1] = wrk.format("POST", "/api/v1/cashbacks", {
            ["Host"] = "127.0.0.1",
            ["Content-Type"] = "application/json",
            ["X-Cezbek-Key"] = key_id,
            ["X-Cezbek-Timestamp"] = ts,
            ["X-Cezbek-Signature"] = sig,
         }, body)
      end
      line_no = line_no + 1
   end
   available = #requests
   sent = 0
   exhausted = 0
   non2xx = 0
   statuses = {}
end

function request()
   sent = sent + 1
   if sent > #requests then
      exhausted = exhausted + 1
      return requests[#requests]
   end
   return requests[sent]
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      statuses[status] = (statuses[status] or 0) + 1
      if non2xx <= 3 then
         io.stderr:write(string.format("non-2xx %d: %s\n", status, string.sub(body or "", 1, 300)))
      end
   end
end

function done(summary, latency, requests)
   local non2xx_total, exhausted_total, available = 0, 0, 0
   local by_status = {}
   for _, thread in ipairs(threads) do
      non2xx_total = non2xx_total + thread:get("non2xx")
      exhausted_total = exhausted_total + thread:get("exhausted")
      available = available + thread:get("available")
      local st = thread:get("statuses")
      for code, n in pairs(st) do
         by_status[tostring(code)] = (by_status[tostring(code)] or 0) + n
      end
   end
   local parts = {}
   for code, n in pairs(by_status) do
      parts[#parts + 1] = string.format('"%s": %d', code, n)
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, "exhausted": %d, ' ..
      '"available": %d, "statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
      summary.requests, summary.duration, summary.bytes, non2xx_total, exhausted_total, available,
      table.concat(parts, ", "), e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
