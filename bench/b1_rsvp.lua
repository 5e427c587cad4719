-- wrk script of benchmark B1 (bench/b1_rsvp_post.py): RSVP POSTs as signed-in attendees.
-- Each request: a random attendee's JWT, a random event, a fresh Idempotency-Key.
-- B1_ATTENDEES names a file of lines "token <jwt>" and "event <uuid>", written by the benchmark.
local tokens, events = {}, {}
local statuses = { "going", "maybe" }
local prefix, sent = "", 0

init = function(args)
  for line in io.lines(os.getenv("B1_ATTENDEES")) do
    local kind, value = line:match("^(%a+) (.+)$")
    if kind == "token" then
      tokens[#tokens + 1] = value
    elseif kind == "event" then
      events[#events + 1] = value
    end
  end
  -- keys must not repeat across threads or runs: a random prefix per thread
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
  prefix = string.format("b1-%08x%08x-", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end

request = function()
  sent = sent + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)],
    ["Idempotency-Key"] = prefix .. sent,
  }
  local body = '{"status": "' .. statuses[math.random(#statuses)] .. '"}'
  return wrk.format("POST", "/events/" .. events[math.random(#events)] .. "/rsvps", headers, body)
end
