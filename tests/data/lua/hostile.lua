-- hostile.lua - one transform, many ways to misbehave, chosen by the body
-- (tests/unit/test-lua-host, tests/integration/lua-sandbox.sh). Any other
-- body is transformed normally into "UPPER:<BODY> X".
local cases = {}

cases["loop"] = function() while true do end end
cases["rep"] = function() return string.rep("x", 2^31) end
cases["rep30"] = function() return string.rep("x", 2^30) end
cases["tablebomb"] = function()
    local t = {}
    for i = 1, 1e9 do t[i] = {} end
end
cases["recursion"] = function()
    local function f() return 1 + f() end
    return f()
end
-- coroutines that stay alive, made in a loop
cases["cobomb"] = function()
    local all = {}
    while true do
        local co = coroutine.create(function() coroutine.yield() end)
        coroutine.resume(co)
        all[#all + 1] = co
    end
end
-- coroutines creating coroutines, each resuming the next
cases["conest"] = function()
    local function spawn() coroutine.wrap(spawn)() end
    while true do pcall(spawn) end
end
cases["coloop"] = function() coroutine.wrap(function() while true do end end)() end
cases["catchloop"] = function()
    while true do pcall(function() while true do end end) end
end
cases["pattern"] = function() return string.find(string.rep("a", 300000), ".-.-.-b") end
cases["error"] = function() error("refused: bad order") end
-- returns normally after tampering with everything it can reach
cases["poison"] = function()
    string.upper = function() return "POISONED" end
    rawset(string, "rep", function() return "poisoned" end)
    marker = "leaked"
    pcall(setmetatable, getmetatable(""), {})
    local mt = getmetatable("")
    if type(mt) == "table" then mt.__index = { upper = function() return "POISONED" end } end
end

function transform(msg)
    if marker ~= nil then error("a global leaked from an earlier message: " .. marker) end
    local f = cases[msg.body]
    if f then f() end
    return {
        body = "UPPER:" .. string.upper(msg.body) .. " " .. ("x"):upper() .. string.rep("!", 1),
        content_type = "text/plain",
        headers = { ["x-transformed"] = "yes" },
    }
end
