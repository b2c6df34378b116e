-- wrk script: every request carries the next credential of a file, in order
-- (wrapping around at the end), so that each credential is presented once
-- before any is presented twice.
-- wrk -s sequential.lua URL -- FILE KIND PATH   (as random.lua)
local reqs, n, i = {}, 0, 0

function init(args)
  local file, kind, path = args[1], args[2], args[3]
  for line in io.lines(file) do
    local tok = line:match("^([^\t]+)")
    if tok then
      local h = {}
      if kind == "cookie" then
        h["Cookie"] = "__Host-sg_session=" .. tok
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
end

function request()
  i = i % n + 1
  return reqs[i]
end

dofile(os.getenv("SGBENCH_WRK_DIR") .. "/report.lua")
