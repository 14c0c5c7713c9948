-- bad-syntax.lua - does not compile (line 3)
function transform(msg)
    return msg.body +* 2
end
