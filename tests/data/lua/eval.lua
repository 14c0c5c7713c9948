-- eval.lua - sandbox tests (tests/unit/test-lua-host): runs the message body
-- as a Lua chunk through the sandbox's own load() and returns its result as
-- the new body (a table result is returned as it is).
function transform(msg)
    local chunk, err = load(msg.body, "=snippet")
    if not chunk then error(err, 0) end
    local r = chunk(msg)
    if type(r) == "table" then return r end
    return { body = tostring(r) }
end

function predicate(msg)
    return msg.headers["x-pass"] == "yes"
end
