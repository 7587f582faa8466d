-- tally-bench's wrk script: one script for every HTTP scenario, steered by environment
-- variables (wrk's own arguments do not reach the summary in `done`):
--   TALLY_WRK_MODE      like | feed-warm | feed-cold | get
--   TALLY_WRK_TOKENS    file of bearer tokens, one per line (like; feed-warm reads as the
--                       first one's user when given)
--   TALLY_WRK_POSTS     file of post ids, one per line
--   TALLY_WRK_HOT       1: every like goes to the first post; 0: a random post
--   TALLY_WRK_DELAY_MS  pause before each request on a connection (0: as fast as possible)
--   TALLY_WRK_THREADS   wrk's -t, so threads can share out the tokens
--   TALLY_WRK_PATH      request path (get)
--   TALLY_WRK_OUT       file the summary is written to, as JSON
-- Likes take the tokens in turn (thread i takes i, i+n, ...), so no like repeats a user on a
-- post until the tokens run out.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local function read_lines(file)
  local lines = {}
  if file == nil or file == "" or file == "-" then return lines end
  for line in io.lines(file) do
    if line ~= "" then table.insert(lines, line) end
  end
  return lines
end

function init(args)
  mode = os.getenv("TALLY_WRK_MODE")
  tokens = read_lines(os.getenv("TALLY_WRK_TOKENS"))
  posts = read_lines(os.getenv("TALLY_WRK_POSTS"))
  hot = os.getenv("TALLY_WRK_HOT") == "1"
  delay_ms = tonumber(os.getenv("TALLY_WRK_DELAY_MS")) or 0
  path = os.getenv("TALLY_WRK_PATH")
  counter = 0
  nthreads = tonumber(os.getenv("TALLY_WRK_THREADS")) or 1
  math.randomseed(os.time() + tid * 7919)
  if mode == "feed-warm" then
    local ids = {}
    for i = 1, 50 do ids[i] = posts[i] end
    warm_path = "/v1/posts?ids=" .. table.concat(ids, ",")
    warm_headers = {}
    if #tokens > 0 then warm_headers["Authorization"] = "Bearer " .. tokens[1] end
  end
end

function request()
  if mode == "like" then
    local token = tokens[((tid + counter * nthreads) % #tokens) + 1]
    counter = counter + 1
    local post = hot and posts[1] or posts[math.random(#posts)]
    return wrk.format("POST", "/v1/likes",
      { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
      '{"post_id":"' .. post .. '"}')
  elseif mode == "feed-warm" then
    return wrk.format("GET", warm_path, warm_headers)
  elseif mode == "feed-cold" then
    local ids = {}
    for i = 1, 50 do ids[i] = posts[math.random(#posts)] end
    return wrk.format("GET", "/v1/posts?ids=" .. table.concat(ids, ","))
  else
    return wrk.format("GET", path)
  end
end

-- Defined only for open-loop runs: wrk schedules every request through a timer once a script
-- has `delay`, which would slow the closed-loop runs.
if (tonumber(os.getenv("TALLY_WRK_DELAY_MS")) or 0) > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("TALLY_WRK_OUT"), "w"))
  local points = {}
  for _, p in ipairs({ 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9, 99.99 }) do
    table.insert(points, string.format("[%g,%d]", p, latency:percentile(p)))
  end
  local e = summary.errors
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"non_2xx":%d,"mean_us":%f,"percentiles":[%s]}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency.mean, table.concat(points, ",")))
  out:close()
end
