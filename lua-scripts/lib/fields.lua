-- lib/fields.lua - checked conversions of legacy field text, shared by the
-- shipped transforms. Every failure raises an error that names the script
-- and the field, so a dead-lettered message says what was wrong with it:
--   legacy_order_xml: field 'Line[2]/Quantity': '1O' is not an integer
--
--   local f = require("lib.fields").new("my_script")
--   f:req(text, "name")  f:opt(text)  f:num(text, "name")  f:int(text, "name")
--   f:time(text, "name")  f.cents(x)
local M = {}
M.__index = M

-- A converter whose errors name the script `who`.
function M.new(who)
  return setmetatable({who = who}, M)
end

function M:fail(what, fmt, ...)
  error(string.format("%s: field '%s': " .. fmt, self.who, what, ...), 0)
end

-- Trimmed text, or nil when v is nil or only blanks.
function M:opt(v)
  if v == nil then return nil end
  v = tostring(v):match("^%s*(.-)%s*$")
  if v == "" then return nil end
  return v
end

-- Trimmed text that must be present.
function M:req(v, what)
  local s = self:opt(v)
  if s == nil then self:fail(what, "is missing or empty") end
  return s
end

-- A decimal number written with a '.' (no thousands separators) as a
-- float; nil if absent.
function M:num(v, what)
  local s = self:opt(v)
  if s == nil then return nil end
  if not (s:match("^[+-]?%d+%.?%d*$") or s:match("^[+-]?%.%d+$")) then
    self:fail(what, "'%s' is not a number", s)
  end
  return tonumber(s) + 0.0
end

-- An integer (optional sign, leading zeros fine); nil if absent.
function M:int(v, what)
  local s = self:opt(v)
  if s == nil then return nil end
  if not s:match("^[+-]?%d+$") then self:fail(what, "'%s' is not an integer", s) end
  local n = math.tointeger(tonumber(s))
  if n == nil then self:fail(what, "'%s' is out of range", s) end
  return n
end

-- An ISO 8601 date or date-time (no offset = UTC) as RFC 3339 UTC with
-- milliseconds, e.g. "2024-05-01T07:30:00.000Z"; nil if absent.
function M:time(v, what)
  local s = self:opt(v)
  if s == nil then return nil end
  local good, ms = pcall(esb.time.parse, s)
  if not good then self:fail(what, "'%s' is not an ISO 8601 date or time", s) end
  return esb.time.format(ms)
end

-- A money amount rounded to cents (sums of floats such as 0.1 + 0.2).
function M.cents(x)
  if x == nil then return nil end
  if x < 0 then return -M.cents(-x) end
  return math.floor(x * 100 + 0.5) / 100
end

return M
