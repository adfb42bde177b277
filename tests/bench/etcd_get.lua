-- wrk against etcd's v3 JSON gateway: POST /v3/kv/range of bench/key1 (YmVuY2gva2V5MQ==);
-- linearizable by default (etcd's ReadIndex), serializable (local, like ?stale) when
-- ETCD_SERIALIZABLE=1.
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "report.lua")

local body = '{"key":"YmVuY2gva2V5MQ=="' ..
             (os.getenv("ETCD_SERIALIZABLE") == "1" and ',"serializable":true}' or '}')
wrk.method = "POST"
wrk.path = "/v3/kv/range"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  bench_report(summary, latency)
end
