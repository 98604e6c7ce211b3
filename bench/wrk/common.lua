-- Shared by the wrk scripts of bench/speed_benchmark.py: a monotonic clock (LuaJIT's FFI: wrk's Lua has no
-- clock finer than a second) and the one result line the driver parses.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } brikk_bench_timespec;
int clock_gettime(int clock_id, brikk_bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("brikk_bench_timespec")

local common = {}

function common.now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local function json_value(value)
  if type(value) == "string" then
    local clean = value:gsub("%c", " "):gsub("\\", "\\\\"):gsub('"', '\\"')
    return '"' .. clean .. '"'
  elseif value == nil then
    return "null"
  elseif value == math.huge or value == -math.huge or value ~= value then
    return "null"
  elseif value == math.floor(value) and math.abs(value) < 2 ^ 53 then
    return string.format("%d", value)
  end
  return string.format("%.6f", value)
end

-- One line "BENCH_RESULT {...}" on standard output: wrk's summary, its latency percentiles (µs) and the
-- script's own counters (a flat table of numbers and strings).
function common.report(summary, latency, counters)
  local fields = {
    string.format('"duration_us":%d', summary.duration),
    string.format('"requests":%d', summary.requests),
    string.format('"bytes":%d', summary.bytes),
    string.format('"connect_errors":%d', summary.errors.connect),
    string.format('"read_errors":%d', summary.errors.read),
    string.format('"write_errors":%d', summary.errors.write),
    string.format('"status_errors":%d', summary.errors.status),
    string.format('"timeouts":%d', summary.errors.timeout),
    string.format('"p50_us":%d', latency:percentile(50)),
    string.format('"p90_us":%d', latency:percentile(90)),
    string.format('"p99_us":%d', latency:percentile(99)),
    string.format('"max_us":%d', latency.max),
  }
  for name, value in pairs(counters or {}) do
    fields[#fields + 1] = string.format('"%s":%s', name, json_value(value))
  end
  io.write("BENCH_RESULT {" .. table.concat(fields, ",") .. "}\n")
end

return common
