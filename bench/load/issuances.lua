-- wrk: POST to the URL's path (/v1/issuances), each request for a citizen no request has used before.
-- KYSO_TOKEN is a CA's token. Citizens are numbered across wrk's threads: thread t sends
-- t, t + T, t + 2T, … (T threads), mapped onto valid Huế CCCDs born 1940–1999.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  stride = tonumber(os.getenv("KYSO_THREADS") or "2")
  auth = "Bearer " .. os.getenv("KYSO_TOKEN")
  offset = tonumber(os.getenv("KYSO_OFFSET") or "0")
end

local communes = { "19750", "19819", "19867", "19903" }

function request()
  local i = offset + n * stride + id
  n = n + 1
  local serial = i % 1000000
  local rest = math.floor(i / 1000000)
  local yy = 40 + rest % 60
  local digit = math.floor(rest / 60) % 2
  local cccd = string.format("046%d%02d%06d", digit, yy, serial)
  local body = string.format(
    '{"citizen":"%s","channel":"app","segment":"adult_citizen","commune":"%s","activated_at":"2023-09-01T07:59:00Z"}',
    cccd, communes[i % 4 + 1])
  return wrk.format("POST", wrk.path, { ["Authorization"] = auth, ["Content-Type"] = "application/json" }, body)
end

-- The directory of this script, wherever wrk is started from.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
response = dofile(here .. "unexpected.lua")(201)
