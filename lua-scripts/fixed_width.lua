-- fixed_width.lua - account balance records from the mainframe's nightly
-- extract (fixed width, one record per line) -> canonical record events
-- (docs/canonical.md), one per record.
--
-- Record layout (80 bytes; positions 1-based, a trailing CR/LF is not
-- part of the record; lines may be cut after position 64):
--   pos  len  field
--    1    2   record type, "01" (balance record)
--    3   10   account number, digits (leading zeros kept)
--   13   30   account holder, padded with spaces
--   43   13   balance: sign (+, - or space) and 12 digits, 2 implied
--             decimals: "-000000012345" = -123.45
--   56    8   last activity date YYYYMMDD; 00000000 or blank = none
--   64    1   status: A active, C closed, S suspended, D delinquent
--   65    3   currency (ISO 4217); blank = EUR (the extract's default)
--   68   13   filler
-- Output per record: type com.acme.account.record, source
-- /legacy/mainframe, subject = the account number, data = {account,
-- holder, balance (number), currency, last_activity? ("YYYY-MM-DD"),
-- status ("active", ...)}. One record: the message itself; several: a
-- split as in csv_row.lua (event ids "<message id>-<n>", correlationid).
-- A short line, a wrong record type, a bad number, date or status: an
-- error naming the line and field (dead-lettered).
local canon = require "lib.canon"

local WHO = "fixed_width"
local SPEC = {
  {name = "rectype", start = 1, len = 2},
  {name = "account", start = 3, len = 10},
  {name = "holder", start = 13, len = 30},
  {name = "balance", start = 43, len = 13, type = "decimal", scale = 2},
  {name = "last_activity", start = 56, len = 8, type = "date"},
  {name = "status", start = 64, len = 1},
}
local STATUS = {A = "active", C = "closed", S = "suspended", D = "delinquent"}

local function record_of(line, n)
  local good, r = pcall(esb.fixed.parse, line, SPEC)
  if not good then error(string.format("%s: line %d: %s", WHO, n, r), 0) end
  local function bad(field, fmt, ...)
    error(string.format("%s: line %d: field '%s': " .. fmt, WHO, n, field, ...), 0)
  end
  if r.rectype ~= "01" then bad("rectype", "'%s' is not a balance record (01)", r.rectype) end
  if not r.account:match("^%d+$") or #r.account ~= 10 then
    bad("account", "'%s' is not 10 digits", r.account)
  end
  if r.holder == "" then bad("holder", "is blank") end
  if r.balance == nil then bad("balance", "is blank") end
  local status = STATUS[r.status]
  if status == nil then bad("status", "'%s' is not one of A, C, S, D", r.status) end
  local currency = line:sub(65, 67):match("^%s*(.-)%s*$")
  if currency == "" then
    currency = "EUR"
  elseif not currency:match("^%u%u%u$") then
    bad("currency", "'%s' is not an ISO 4217 code", currency)
  end
  return {
    account = r.account,
    holder = r.holder,
    balance = r.balance,
    currency = currency,
    last_activity = r.last_activity,
    status = status,
  }
end

function transform(msg)
  local lines, ln = {}, 0
  for line in (msg.body .. "\n"):gmatch("([^\n]*)\n") do
    ln = ln + 1
    line = line:gsub("\r$", "")
    if line:match("%S") then lines[#lines + 1] = {text = line, n = ln} end
  end
  local out = {}
  local n = #lines
  for k, l in ipairs(lines) do
    local data = record_of(l.text, l.n)
    out[k] = canon.message(msg, canon.part(msg, k, n, {
      type = "com.acme.account.record",
      source = "/legacy/mainframe",
      subject = data.account,
      data = data,
    }))
  end
  return canon.result(out)
end
