-- wrk: POST /events/{id}/rsvps as a random user to a random event, with a
-- fresh Idempotency-Key, the way B1 drives the API (`wrk -t1 -c64 -s bench/rsvp_post.lua`).
-- RSVP_DATA names a Lua file defining `tokens` (JWTs) and `events` (event ids).
dofile(os.getenv("RSVP_DATA") or "rsvp_data.lua")

local statuses = { "going", "maybe", "declined" }
local counter = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)],
    ["Idempotency-Key"] = string.format("%08x-%d-%d", math.random(0, 0x7fffffff), counter, os.time()),
  }
  local body = string.format('{"status": "%s", "guests": %d}', statuses[math.random(3)], math.random(0, 2))
  return wrk.format("POST", "/events/" .. events[math.random(#events)] .. "/rsvps", headers, body)
end
