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

-- With a `response` function wrk parses every answer's headers and body for Lua: its own
-- CPU, on the two cores it shares with the server. It counts non-2xx answers without one
-- (bench/load/run reports them), so the function is there only with KYSO_WRK_BODIES=1, to
-- see what unexpected answers say.
if os.getenv("KYSO_WRK_BODIES") == "1" then
  function response(status, headers, body)
    if status ~= 200 then
      errors = (errors or 0) + 1
      if errors <= 3 then io.stderr:write("unexpected ", status, ": ", body, "\n") end
    end
  end
end
