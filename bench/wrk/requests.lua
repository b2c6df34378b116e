-- Shared by random.lua and sequential.lua: the requests, formatted once.
-- load_requests(FILE, KIND, PATH) returns the list of requests and its length:
--   FILE: one credential per line (the first tab-separated field is used)
--   KIND: cookie (__Host-sg_session), tscookie (tower-sessions' `id` cookie), bearer
--   PATH: the request path
function load_requests(file, kind, path)
  local reqs, n = {}, 0
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
  return reqs, n
end
