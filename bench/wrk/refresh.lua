-- wrk script: refresh-token rotation chains. Each refresh token is used once;
-- each 200 response's refresh_token is queued for the next request.
-- wrk -t1 -c C -s refresh.lua URL -- FILE   (FILE: at least C refresh tokens)
-- With one thread, tokens in the queue = connections ready to send, so the
-- queue never runs dry unless a rotation fails (then the chain is lost and the
-- next request sends an invalid token, counted as non-2xx).
-- wrk calls request() once in thread 0's state before connecting, to check for
-- pipelining; that first call must not spend a token. Hence one thread only.
local q, head, tail = {}, 1, 0
local verified = false

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then tail = tail + 1; q[tail] = line end
  end
end

function request()
  local tok = "sgr_chain_broken"
  if not verified then
    verified = true
    return wrk.format("POST", "/v1/token", nil, "")
  end
  if head <= tail then
    tok = q[head]; q[head] = nil; head = head + 1
  end
  return wrk.format("POST", "/v1/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=refresh_token&refresh_token=" .. tok)
end

local failures = 0

function response(status, headers, body)
  if status == 200 then
    local t = body:match('"refresh_token":"([^"]+)"')
    if t then tail = tail + 1; q[tail] = t; return end
  end
  -- A lost chain: say why (status and error code only; never a token).
  failures = failures + 1
  if failures <= 3 then
    io.stderr:write(string.format("refresh failed: HTTP %d %s\n", status,
      body:match('"code":"([^"]+)"') or body:match('"error":"([^"]+)"') or ""))
  end
end

dofile(os.getenv("SGBENCH_WRK_DIR") .. "/report.lua")
