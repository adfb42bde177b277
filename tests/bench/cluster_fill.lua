-- wrk: fills the store with FILL_PER_THREAD unique keys per wrk thread,
-- PUT /v1/kv/fill/t<thread>-<n> (n = 1..quota) with a BENCH_VALUE_BYTES body (default 100);
-- then the thread stops and creates the file FILL_MARK<thread> (wrk itself runs on until -d
-- or SIGINT: tests/bench/cluster.sh waits for the marks, then interrupts it). Used to load
-- 100k entries for the catch-up test.
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "report.lua")

local quota = tonumber(os.getenv("FILL_PER_THREAD") or "50000")
local body = string.rep("f", tonumber(os.getenv("BENCH_VALUE_BYTES") or "100"))
local n = 0
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

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

function done(summary, latency, requests)
  bench_report(summary, latency)
end
