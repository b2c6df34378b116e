-- Shared by the wrk scripts: one machine-readable line at the end.
-- BENCH <requests> <duration_us> <p50_us> <p99_us> <socket_errors> <non_2xx_3xx>
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH\t%d\t%d\t%d\t%d\t%d\t%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
