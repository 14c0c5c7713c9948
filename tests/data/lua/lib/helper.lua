-- lib/helper.lua - a module for require() tests: require("lib.helper").
local M = {}
function M.shout(s) return s:upper() .. "!" end
helper_global = "set by the module" -- a global of the module's own environment
return M
