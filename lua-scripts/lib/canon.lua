-- lib/canon.lua - build the canonical message (a CloudEvents 1.0 structured
-- event, docs/canonical.md) that every shipped transform returns.
--
--   canon.message(msg, {type=, source=, subject=, time=, data=, id=})
--     -> a message table: body = the event's JSON (stable key order),
--        content_type = application/cloudevents+json, the input's headers
--        kept. The event id is msg.id unless attrs.id is given; correlation
--        and trace headers become the extensions correlationid,
--        traceparent, tracestate (esb.canonical.from_msg).
local M = {}

M.message = esb.canonical.message -- to_msg(from_msg(msg, attrs), {id=, headers=}) in one call

-- attrs for part i of a message that a transform splits into n parts:
-- the event id is the message id when n == 1, else "<msg id>-<i>"
-- (replaying the same input gives the same event ids, so consumers can
-- deduplicate), and the parts carry the extension correlationid (the
-- input's correlation-id header, else its id) to be regrouped. Returns attrs.
function M.part(msg, i, n, attrs)
  if n == 1 then return attrs end
  attrs.id = string.format("%s-%d", msg.id, i)
  if not msg.headers["correlation-id"] then
    attrs.extensions = {correlationid = msg.id}
  end
  return attrs
end

-- The result of a transform that made the messages in list: the message
-- itself for one, the list for several (a split), nil for none.
function M.result(list)
  if #list == 0 then return nil end
  if #list == 1 then return list[1] end
  return list
end

return M
