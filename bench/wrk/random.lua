-- wrk script: every request carries a credential picked at random from a file.
-- wrk -s random.lua URL -- FILE KIND PATH
--   FILE: one credential per line (the first tab-separated field is used)
--   KIND: cookie (__Host-sg_session), tscookie (tower-sessions' `id` cookie), bearer
--   PATH: the request path
-- The requests are formatted once in init(); request() only picks one.
local reqs, n = {}, 0

function init(args)
  local file, kind, path = args[1], args[2], args[3]
  for line in io.lines(file) do
    local tok = line:match("^([^\t]+)")
    if tok then
      local h = {}
      if kind == "cookie" then
        h["Cookie"] = "__Host-sg_session=" .. tok
      elseif kind == "tscookie" then
        h["Cookie"] = "id=" .. tok
      elseif kind == "bearer" then
        h["Authorization"] = "Bearer " .. tok
      else
        error("unknown credential kind " .. tostring(kind))
      end
      n = n + 1
      reqs[n] = wrk.format("GET", path, h)
    end
  end
  if n == 0 then error("no credentials in " .. file) end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  return reqs[math.random(n)]
end

dofile(os.getenv("SGBENCH_WRK_DIR") .. "/report.lua")
