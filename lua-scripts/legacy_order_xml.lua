-- legacy_order_xml.lua - a legacy ERP purchase order (XML in the namespace
-- urn:acme:po:1, bare or wrapped in a SOAP 1.1 envelope) -> the canonical
-- order: a CloudEvents 1.0 structured event (docs/canonical.md).
--
-- Input (any namespace prefix; the SOAP variant carries the same element
-- as the only child of soap:Body):
--   <PurchaseOrder xmlns="urn:acme:po:1" orderNumber="PO-1" orderDate="2024-05-01T09:30:00+02:00">
--     <Customer id="C-1"><Name>Ann</Name></Customer>     Name optional
--     <Currency>EUR</Currency>
--     <Lines><Line><Sku>A</Sku><Quantity>2</Quantity><UnitPrice>9.50</UnitPrice></Line>...</Lines>
--     <Total>19.00</Total>                                optional: sum of the lines
--   </PurchaseOrder>
-- Output event: type com.acme.order.created, source /legacy/erp, subject =
-- the order number, time = the order date, id = the message id, data =
--   {order_id, customer = {id, name?}, currency, total, lines = [{sku, qty,
--    unit_price}], ordered_at}
-- (ordered_at and time in UTC, RFC 3339 with milliseconds). Anything
-- missing or malformed is an error naming the field: the message is
-- dead-lettered with it.
local canon = require "lib.canon"
local xmlx = require "lib.xmlx"

local WHO = "legacy_order_xml"
local PO = "urn:acme:po:1"
local f = require("lib.fields").new(WHO)

local function line_of(e, i)
  local where = string.format("Line[%d]/", i)
  return {
    sku = f:req(xmlx.child_text(e, "Sku", PO), where .. "Sku"),
    qty = f:int(f:req(xmlx.child_text(e, "Quantity", PO), where .. "Quantity"), where .. "Quantity"),
    unit_price = f:num(f:req(xmlx.child_text(e, "UnitPrice", PO), where .. "UnitPrice"),
      where .. "UnitPrice"),
  }
end

function transform(msg)
  local po = xmlx.payload(esb.xml.parse(msg.body), WHO)
  if not xmlx.is(po, "PurchaseOrder", PO) then
    error(string.format("%s: not a purchase order: the document is <%s> in namespace '%s', " ..
      "expected <PurchaseOrder> in '%s'", WHO, po.name, po.ns or "", PO), 0)
  end

  local cust = xmlx.child(po, "Customer", PO)
  if cust == nil then error(WHO .. ": field 'Customer' is missing", 0) end
  local lines_e = xmlx.child(po, "Lines", PO)
  local lines = {}
  local sum = 0.0
  for i, e in ipairs(lines_e and xmlx.children(lines_e, "Line", PO) or {}) do
    lines[i] = line_of(e, i)
    sum = sum + lines[i].qty * lines[i].unit_price
  end
  if #lines == 0 then error(WHO .. ": field 'Lines' holds no Line", 0) end

  local ordered_at = f:time(f:req(po.attrs.orderDate, "@orderDate"), "@orderDate")
  local order_id = f:req(po.attrs.orderNumber, "@orderNumber")
  local data = {
    order_id = order_id,
    customer = {
      id = f:req(cust.attrs.id, "Customer/@id"),
      name = f:opt(xmlx.child_text(cust, "Name", PO)),
    },
    currency = f:req(xmlx.child_text(po, "Currency", PO), "Currency"),
    total = f:num(xmlx.child_text(po, "Total", PO), "Total") or f.cents(sum),
    lines = esb.json.array(lines),
    ordered_at = ordered_at,
  }
  return canon.message(msg, {
    type = "com.acme.order.created",
    source = "/legacy/erp",
    subject = order_id,
    time = ordered_at,
    data = data,
  })
end
