-- wrk: bad client credentials at POST /auth/token from another address
-- (X-Forwarded-For, which the server believes from 127.0.0.1 with
-- --trusted-proxies), paced by delay(): every other one a well-formed key
-- that no account holds, the others malformed.
-- Usage: wrk ... -s bench/flood.lua URL -- UNKNOWN_KEYS_FILE DELAY_MS

local bodies = {}
local next_body = 1
local pause = 10

function init(args)
  for key in io.lines(args[1]) do
    bodies[#bodies + 1] = "grant_type=client_credentials&client_secret=" .. key
    bodies[#bodies + 1] = "grant_type=client_credentials&client_secret=lk_" .. key:sub(4, 20)
  end
  if #bodies == 0 then
    error("no keys in " .. args[1])
  end
  pause = tonumber(args[2])
end

function delay()
  return pause
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/auth/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Forwarded-For"] = "198.51.100.7",
  }, body)
end
