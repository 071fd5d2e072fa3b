-- wrk script of bench/api.py: POST a different GraphQL request body each time, from a file of bodies.
--
--   wrk -t1 -c16 -d10s -s bench/api_wrk.lua http://127.0.0.1:PORT/graphql -- BODIES_FILE
--
-- BODIES_FILE holds one JSON body per line (bench/api.py writes them: the same query with a different id or
-- category each), POSTed to the URL; a line "GET /path?query" is a GET of that path instead (the REST queries). Requests are formatted once in init(); each thread starts at its own offset in the list and
-- cycles through it. No response() callback: wrk then does not hand bodies to Lua, which keeps the client cheap
-- (bench/api.py checks the answers' contents before timing). done() prints one line
-- "APIBENCH_JSON {...}" with the counts, the error counts and latency percentiles in microseconds.

local threads = {}
local requests = {}
local position = 1

function setup(thread)
   thread:set("index", #threads)
   table.insert(threads, thread)
end

function init(args)
   local path = args[1]
   if path == nil then
      error("usage: wrk ... -s api_wrk.lua URL -- BODIES_FILE")
   end
   local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
   local get_headers = { ["Accept"] = "application/json" }
   for line in io.lines(path) do
      if line:sub(1, 4) == "GET " then
         table.insert(requests, wrk.format("GET", line:sub(5), get_headers))
      elseif #line > 0 then
         table.insert(requests, wrk.format("POST", nil, headers, line))
      end
   end
   if #requests == 0 then
      error("no request body in " .. path)
   end
   local spread = math.floor(#requests / 16)
   position = ((index or 0) * spread) % #requests + 1
end

function request()
   local r = requests[position]
   position = position % #requests + 1
   return r
end

function done(summary, latency, _)
   local e = summary.errors
   local fields = {
      string.format('"requests": %d', summary.requests),
      string.format('"duration_us": %d', summary.duration),
      string.format('"bytes": %d', summary.bytes),
      string.format('"errors_connect": %d', e.connect),
      string.format('"errors_read": %d', e.read),
      string.format('"errors_write": %d', e.write),
      string.format('"errors_status": %d', e.status),
      string.format('"errors_timeout": %d', e.timeout),
      string.format('"mean_us": %.1f', latency.mean),
      string.format('"max_us": %d', latency.max),
   }
   for _, p in ipairs({ 50, 90, 99, 99.9 }) do
      table.insert(fields, string.format('"p%s_us": %d', tostring(p), latency:percentile(p)))
   end
   io.write("APIBENCH_JSON {" .. table.concat(fields, ", ") .. "}\n")
end
