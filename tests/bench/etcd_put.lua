-- wrk against etcd's v3 JSON gateway: POST /v3/kv/put with the same keys and 100-byte value
-- as put.lua (base64 in the JSON body, as the gateway wants).
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "report.lua")

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function b64(s)
  return ((s:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

local nkeys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local value = b64(string.rep("v", 100))
local n = 0
local nthreads = 0
local bodies = nil

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

function init(args)
  -- Precompute the bodies so the Lua side costs the same per request as put.lua.
  bodies = {}
  for i = 0, nkeys - 1 do
    bodies[i] = '{"key":"' .. b64("bench/t" .. tid .. "-" .. i) .. '","value":"' .. value .. '"}'
  end
end

function request()
  n = n + 1
  return wrk.format("POST", "/v3/kv/put", { ["Content-Type"] = "application/json" },
                    bodies[n % nkeys])
end

function done(summary, latency, requests)
  bench_report(summary, latency)
end
