-- wrk script: the bearer token from WEIR_TOKEN, and requests alternating between
-- the project list and the summary (the dashboard's two polling calls).
local token = os.getenv("WEIR_TOKEN")
local paths = { "/api/v1/projects", "/api/v1/summary" }
local n = 0

request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1], { ["Authorization"] = "Bearer " .. token })
end

-- Count answers that are not 200 (wrk counts only >= 400 as errors by itself).
local not_ok = 0
response = function(status, headers, body)
  if status ~= 200 then
    not_ok = not_ok + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("not-200: %d\n", summary.errors.status))
  io.write(string.format("p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
