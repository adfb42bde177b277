-- wrk: PUT /v1/kv/bench/t<thread>-<n> with a BENCH_VALUE_BYTES body (default 100); each wrk
-- thread rotates over BENCH_KEYS keys (default 1000), so the store stays bounded however long
-- the run.
-- With FILL_PER_THREAD=Q it fills the store instead: Q unique keys per wrk thread,
-- PUT /v1/kv/fill/t<thread>-<n> (n = 1..Q, body of "f"); then the thread stops and creates the
-- file FILL_MARK<thread> (wrk itself runs on until -d or SIGINT: tests/bench/cluster.sh waits
-- for the marks, then interrupts it).
-- Non-2xx answers are counted by wrk as err_status (see report.lua).
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "report.lua")

local quota = tonumber(os.getenv("FILL_PER_THREAD") or "0")
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local body = string.rep(quota > 0 and "f" or "v",
                        tonumber(os.getenv("BENCH_VALUE_BYTES") or "100"))
local n = 0
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

if quota == 0 then
  function request()
    n = n + 1
    return wrk.format("PUT", "/v1/kv/bench/t" .. tid .. "-" .. (n % nkeys),
                      { ["Content-Type"] = "application/octet-stream" }, body)
  end
else
  function request()
    n = n + 1
    if n == quota + 1 then
      local f = io.open((os.getenv("FILL_MARK") or "/tmp/fill-mark-") .. tid, "w")
      if f then f:close() end
    end
    if n > quota then
      wrk.thread:stop()
      n = quota + 1
    end
    return wrk.format("PUT", "/v1/kv/fill/t" .. tid .. "-" .. n,
                      { ["Content-Type"] = "application/octet-stream" }, body)
  end
end

function done(summary, latency, requests)
  bench_report(summary, latency)
end
