-- A plain GET load (the bare view, /healthz): wrk's own loop, bounded by -d; every answer must be 2xx
-- (wrk counts the others as status errors). Only the result line is added.
package.path = debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "?.lua;" .. package.path
local common = require("common")

function done(summary, latency, requests)
  common.report(summary, latency, {})
end
