-- Replays pre-signed requests (bench/speed_benchmark.py writes them: a line "brikk-requests <count>", then for
-- each request a line with its length in bytes and the raw HTTP/1.1 request). Each wrk thread takes a disjoint
-- slice of the file and sends each of its requests once: it never replays one. It stops sending when the slice
-- is used up or its time is over, waits for every answer it is owed, then stops, so no request is left in
-- flight (what the server committed is exactly what was answered). Every answer is checked:
--   echo:  200 and "status":"delivered" in the body;
--   batch: 200, "refused":0 and "replayed":0; "delivered":<n> counts the messages.
-- Arguments (after --): file, mode (echo | batch), seconds.
package.path = debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local threads = {}

function setup(thread)
  thread:set("thread_number", #threads)
  threads[#threads + 1] = thread
end

-- Globals, not locals: done() reads them from each thread with thread:get().
items = {}
cursor = 1
issued, answered, failed, delivered = 0, 0, 0, 0
first_sent, last_answer = nil, nil
finished_sending = false
verifying = false
error_sample = ""
local mode, deadline, seconds

function init(args)
  local path = args[1]
  mode = args[2] or "echo"
  seconds = tonumber(args[3] or "10")
  local file = assert(io.open(path, "rb"))
  local count = tonumber(file:read("*l"):match("^brikk%-requests (%d+)$"))
  local thread_count = tonumber(args[4] or "1")
  local per_thread = math.ceil(count / thread_count)
  local first = thread_number * per_thread + 1
  local last = math.min(count, first + per_thread - 1)
  for index = 1, last do
    local length = tonumber(file:read("*l"))
    if index < first then
      file:seek("cur", length)
    else
      items[#items + 1] = file:read(length)
    end
  end
  file:close()
  -- wrk asks the first thread's script for one request before starting, only to check that it parses:
  -- that one is not sent, so it must not use up an item.
  verifying = thread_number == 0
end

function request()
  if verifying then
    verifying = false
    return items[1] or "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
  end
  local now = common.now()
  if not first_sent then
    first_sent = now
    deadline = now + seconds
  end
  if cursor > #items or now >= deadline then
    -- Nothing more to send: an empty request leaves this connection idle (wrk writes nothing).
    finished_sending = true
    if answered >= issued then
      wrk.thread:stop()
    end
    return ""
  end
  local item = items[cursor]
  items[cursor] = false -- sent once, never again
  cursor = cursor + 1
  issued = issued + 1
  return item
end

function response(status, headers, body)
  answered = answered + 1
  last_answer = common.now()
  local ok = status == 200
  if ok and mode == "batch" then
    -- Delivered items are counted even when others were refused, so that the rows can be checked.
    local count = tonumber(body:match('"delivered":(%d+)'))
    delivered = delivered + (count or 0)
    ok = count ~= nil and body:find('"refused":0', 1, true) ~= nil and body:find('"replayed":0', 1, true) ~= nil
  elseif ok then
    ok = body:find('"status":"delivered"', 1, true) ~= nil
    if ok then
      delivered = delivered + 1
    end
  end
  if not ok then
    failed = failed + 1
    if error_sample == "" then
      error_sample = tostring(status) .. " " .. body:sub(1, 300)
    end
  end
  if (finished_sending or cursor > #items) and answered >= issued then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total = { issued = 0, answered = 0, failed = 0, delivered = 0, first_sent = math.huge, last_answer = 0 }
  local sample = ""
  for _, thread in ipairs(threads) do
    total.issued = total.issued + (thread:get("issued") or 0)
    total.answered = total.answered + (thread:get("answered") or 0)
    total.failed = total.failed + (thread:get("failed") or 0)
    total.delivered = total.delivered + (thread:get("delivered") or 0)
    local first, last = thread:get("first_sent"), thread:get("last_answer")
    if first and first < total.first_sent then
      total.first_sent = first
    end
    if last and last > total.last_answer then
      total.last_answer = last
    end
    if sample == "" then
      sample = thread:get("error_sample") or ""
    end
  end
  total.seconds = total.last_answer > 0 and (total.last_answer - total.first_sent) or 0
  total.first_sent, total.last_answer = nil, nil
  total.error_sample = sample
  common.report(summary, latency, total)
end
