-- no-fn.lua - compiles, but defines no transform function
function transfrom(msg) return msg end
