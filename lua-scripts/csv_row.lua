-- csv_row.lua - rows of the CRM's customer export (CSV, RFC 4180) ->
-- canonical record events (docs/canonical.md), one per row.
--
-- Columns (in this order when the body has no header line):
--   customer_id, name, email, country, credit_limit, updated_at
-- A first line that names exactly these columns (in any order, any case)
-- is a header and maps the columns by name. Fields may be quoted ("Smith,
-- Ann"; "" inside quotes is a quote). Empty optional fields (email,
-- country, credit_limit, updated_at) are left out of the event.
--
-- Output per row: type com.acme.customer.record, source
-- /legacy/crm-export, subject = customer_id, data = {customer_id, name,
-- email?, country?, credit_limit? (number), updated_at? (RFC 3339 UTC)}.
-- One row: the message itself (event id = message id). Several rows: a
-- split, one message per row, event ids "<message id>-<n>" (stable when
-- the same file is replayed) and the extension correlationid (the input's
-- correlation-id, else its id); the host sets the headers correlation-id,
-- split-index and split-size on each message. Malformed CSV, a row with
-- the wrong number of fields, a missing customer_id or name, a bad number
-- or date: an error naming the row and field (dead-lettered).
local canon = require "lib.canon"

local WHO = "csv_row"
local f = require("lib.fields").new(WHO)
local COLUMNS = {"customer_id", "name", "email", "country", "credit_limit", "updated_at"}
local IS_COLUMN = {}
for _, c in ipairs(COLUMNS) do IS_COLUMN[c] = true end
local error, format, ipairs, pcall, lower = error, string.format, ipairs, pcall, string.lower
local csv_parse = esb.csv.parse

-- The column order: the header line's, if the first row is one.
local function header_of(row)
  if #row ~= #COLUMNS then return nil end
  local seen, order = {}, {}
  for i, v in ipairs(row) do
    local name = f:opt(lower(v))
    if not IS_COLUMN[name] or seen[name] then return nil end
    seen[name] = true
    order[i] = name
  end
  return order
end

local function record_of(row, order, n)
  if #row ~= #order then
    error(format("%s: row %d: expected %d fields, got %d", WHO, n, #order, #row), 0)
  end
  local r = {}
  for i, name in ipairs(order) do r[name] = row[i] end
  local where = format("row %d: ", n)
  return {
    customer_id = f:req(r.customer_id, "customer_id", where),
    name = f:req(r.name, "name", where),
    email = f:opt(r.email),
    country = f:opt(r.country),
    credit_limit = f:num(r.credit_limit, "credit_limit", where),
    updated_at = f:time(r.updated_at, "updated_at", where),
  }
end

function transform(msg)
  local good, rows = pcall(csv_parse, msg.body)
  if not good then error(WHO .. ": " .. rows, 0) end
  local order = rows[1] and header_of(rows[1])
  local first = 1
  if order then first = 2 else order = COLUMNS end
  local n = #rows - first + 1
  local out = {}
  for i = first, #rows do
    local k = i - first + 1
    local data = record_of(rows[i], order, i)
    out[k] = canon.message(msg, canon.part(msg, k, n, {
      type = "com.acme.customer.record",
      source = "/legacy/crm-export",
      subject = data.customer_id,
      data = data,
    }))
  end
  return canon.result(out)
end
