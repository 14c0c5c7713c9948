-- top-loop.lua - its top level never ends
while true do end
function transform(msg) return msg end
