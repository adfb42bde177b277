-- wrk: PUT /v1/kv/bench/t<thread>-<n> with a BENCH_VALUE_BYTES body (default 100); each wrk
-- thread rotates over BENCH_KEYS keys (default 1000), so the store stays bounded however long
-- the run.
-- Non-2xx answers are counted by wrk as err_status (see report.lua).
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "report.lua")

local nkeys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local body = string.rep("v", tonumber(os.getenv("BENCH_VALUE_BYTES") or "100"))
local n = 0
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

function request()
  n = n + 1
  return wrk.format("PUT", "/v1/kv/bench/t" .. tid .. "-" .. (n % nkeys),
                    { ["Content-Type"] = "application/octet-stream" }, body)
end

function done(summary, latency, requests)
  bench_report(summary, latency)
end
