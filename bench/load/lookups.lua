-- wrk: GET /v1/citizens/{cccd} as a CA, for random citizens (some issued, most not). Every
-- answer is a recorded lookup (R2): an event appended and synced before the 200.
function init(args)
  auth = "Bearer " .. os.getenv("KYSO_TOKEN")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  local cccd = string.format("046%d%02d%06d", math.random(0, 1), math.random(40, 99), math.random(0, 999999))
  return wrk.format("GET", "/v1/citizens/" .. cccd, { ["Authorization"] = auth })
end

-- The directory of this script, wherever wrk is started from.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
response = dofile(here .. "unexpected.lua")(200)
