-- bench/http-ingest.lua - wrk script for bench/http-ingest.
--
-- Every request is a POST of SIZE bytes (the first script argument, default
-- 1024) with Content-Type: application/octet-stream and a Content-Length
-- (wrk sends the body in the same write as the headers). The request is
-- built once per thread; there is no per-response Lua callback, so the
-- script costs wrk nothing per request.
--
-- done() prints the results as "esbbench KEY=VALUE" lines on stdout, which
-- bench/http-ingest reads (wrk's own report has no such lines):
--   requests     responses received (any status) during the measurement
--   seconds      length of the measurement
--   rate         requests / seconds
--   lat_p50_us, lat_p99_us, lat_max_us   latency per request, microseconds
--   err_connect, err_read, err_write, err_timeout   socket errors
--   err_status   responses with a status >= 400 (wrk's "Non-2xx or 3xx")
--   bytes        response bytes read
--
-- usage: wrk -t T -c C -d S --latency -s bench/http-ingest.lua URL -- SIZE

local size = 1024

function init(args)
    if args[1] then
        size = tonumber(args[1]) or size
    end
    wrk.method = "POST"
    wrk.body = string.rep("x", size)
    wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    local out = {
        requests = summary.requests,
        seconds = string.format("%.3f", secs),
        rate = string.format("%.0f", secs > 0 and summary.requests / secs or 0),
        lat_p50_us = latency:percentile(50),
        lat_p99_us = latency:percentile(99),
        lat_max_us = latency.max,
        err_connect = e.connect,
        err_read = e.read,
        err_write = e.write,
        err_timeout = e.timeout,
        err_status = e.status,
        bytes = summary.bytes,
    }
    local keys = {}
    for k in pairs(out) do
        keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
        io.write(string.format("esbbench %s=%s\n", k, tostring(out[k])))
    end
end
