-- contract.lua - the transform return contract (tests/unit/test-lua-host):
-- one function per case, picked with function=.
function same(msg) return msg end

function modify(msg)
    msg.body = msg.body .. "!"
    msg.headers["x-added"] = "1"
    msg.headers["x-remove"] = nil
    msg.content_type = "text/x-changed"
    return msg
end

function new(msg)
    return {
        body = "new",
        content_type = "application/json",
        headers = { ["X-Mixed"] = "v", n = 42, f = 1.5, g = 2.0 },
    }
end

function keepid(msg) return { body = msg.body, id = msg.id } end

function split(msg)
    local out = {}
    for part in msg.body:gmatch("[^,]+") do
        out[#out + 1] = { body = part, headers = { ["x-part"] = part } }
    end
    return out
end

function drop(msg) return nil end
function empty(msg) return {} end
function badtype(msg) return 42 end
function nobody(msg) return { headers = {} } end
function badbody(msg) return { body = {} } end
function badheader(msg) return { body = "x", headers = { ["bad name"] = "v" } } end
function crlf(msg) return { body = "x", headers = { ["x-a"] = "v\r\nInjected: 1" } } end
function badvalue(msg) return { body = "x", headers = { ["x-a"] = true } } end
function badid(msg) return { body = "x", id = "not-a-uuid" } end
function badlist(msg) return { { body = "a" }, "b" } end
function dup(msg) return { body = "x", headers = { ["X-A"] = "1", ["x-a"] = "2" } } end
function ctheader(msg) return { body = "x", headers = { ["Content-Type"] = "text/csv" } } end
function big(msg) return { body = string.rep("x", 2048) } end
function yields(msg) coroutine.yield() end

function bigsplit(msg)
    local out = {}
    for i = 1, 100001 do out[i] = { body = "" } end
    return out
end

function predicate(msg) return msg.headers["x-pass"] == "yes" end
function badpredicate(msg) error("predicate failed on purpose") end
