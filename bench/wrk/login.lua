-- wrk script: password logins (POST /v1/login, JSON) for one user.
-- wrk -s login.lua URL -- FILE   (FILE: one line "username<TAB>password")
local req

function init(args)
  local line = io.lines(args[1])()
  local user, pass = line:match("^([^\t]+)\t(.+)$")
  req = wrk.format("POST", "/v1/login", { ["Content-Type"] = "application/json" },
    string.format('{"username":"%s","password":"%s"}', user, pass))
end

function request()
  return req
end

dofile(os.getenv("SGBENCH_WRK_DIR") .. "/report.lua")
