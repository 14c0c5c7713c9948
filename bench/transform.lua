-- bench/transform.lua - wrk script for bench/transform.
--
-- Every request is a POST of the file FILE (first script argument) with
-- Content-Type CT (second argument, default application/xml), on
-- keep-alive connections. The request is built once per thread.
--
-- done() prints "esbbench KEY=VALUE" lines on stdout for bench/transform:
--   requests, seconds, rate, lat_p50_us, lat_p99_us, err_connect, err_read,
--   err_write, err_timeout, err_status (responses >= 400)
--
-- usage: wrk -t T -c C -d S --latency -s bench/transform.lua URL -- FILE [CT]

function init(args)
    local f = assert(io.open(args[1], "rb"), "cannot open " .. tostring(args[1]))
    local body = f:read("*a")
    f:close()
    wrk.method = "POST"
    wrk.body = body
    wrk.headers["Content-Type"] = args[2] or "application/xml"
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
        err_connect = e.connect,
        err_read = e.read,
        err_write = e.write,
        err_timeout = e.timeout,
        err_status = e.status,
    }
    for k, v in pairs(out) do
        io.write(string.format("esbbench %s=%s\n", k, tostring(v)))
    end
end
