-- wrk: GET of the URL given on the command line (e.g. /v1/kv/bench/key1 or ...?stale).
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "report.lua")

function done(summary, latency, requests)
  bench_report(summary, latency)
end
