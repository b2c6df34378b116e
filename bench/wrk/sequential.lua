-- wrk script: every request carries the next credential of a file, in order
-- (wrapping around at the end), so that each credential is presented once
-- before any is presented twice.
-- wrk -s sequential.lua URL -- FILE KIND PATH   (see requests.lua)
dofile(os.getenv("SGBENCH_WRK_DIR") .. "/requests.lua")
local reqs, n, i = nil, 0, 0

function init(args)
  reqs, n = load_requests(args[1], args[2], args[3])
end

function request()
  i = i % n + 1
  return reqs[i]
end

dofile(os.getenv("SGBENCH_WRK_DIR") .. "/report.lua")
