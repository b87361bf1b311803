-- wrk: POST /auth/token, client credentials in a form body, drawing the keys
-- of the working set round-robin (each thread from its own offset).
-- Usage: wrk ... -s bench/exchange.lua URL -- WORKING_SET_FILE

local threads = 0

function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end

local bodies = {}
local next_body = 1

function init(args)
  for line in io.lines(args[1]) do
    local id, secret = line:match("^(%S+) (%S+)$")
    if id then
      bodies[#bodies + 1] = "grant_type=client_credentials&client_id=" .. id .. "&client_secret=" .. secret
    end
  end
  if #bodies == 0 then
    error("no keys in " .. args[1])
  end
  -- Threads start apart, so they do not ask for the same key at once.
  next_body = (index * 7919) % #bodies + 1
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/auth/token", { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
