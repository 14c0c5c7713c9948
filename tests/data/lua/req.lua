-- req.lua - require() of a module under the script directory.
local helper = require("lib.helper")

function transform(msg)
    local again = require("lib.helper")
    return { body = helper.shout(msg.body) .. tostring(again == helper) .. tostring(helper_global) }
end
