-- Shared by the wrk scripts here: `dofile`d with the status every answer should have, it
-- returns a `response` function that prints the first unexpected answers, or nil.
-- With a `response` function wrk parses every answer's headers and body for Lua: its own
-- CPU, on the two cores it shares with the server. It counts non-2xx answers without one
-- (bench/load/run reports them), so there is one only with KYSO_WRK_BODIES=1, to see what
-- unexpected answers say.
return function(expected)
  if os.getenv("KYSO_WRK_BODIES") ~= "1" then return nil end
  return function(status, headers, body)
    if status ~= expected then
      errors = (errors or 0) + 1
      if errors <= 3 then io.stderr:write("unexpected ", status, ": ", body, "\n") end
    end
  end
end
