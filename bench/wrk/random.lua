-- wrk script: every request carries a credential picked at random from a file.
-- wrk -s random.lua URL -- FILE KIND PATH   (see requests.lua)
-- The requests are formatted once in init(); request() only picks one.
dofile(os.getenv("SGBENCH_WRK_DIR") .. "/requests.lua")
local reqs, n

function init(args)
  reqs, n = load_requests(args[1], args[2], args[3])
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  return reqs[math.random(n)]
end

dofile(os.getenv("SGBENCH_WRK_DIR") .. "/report.lua")
