-- wrk script (use with -t 1): after $BENCH_STOP_AFTER responses, stop the
-- thread and create the file $BENCH_DONE_FILE so that the harness can end
-- wrk at once (wrk itself would wait for the whole -d duration).
local limit = tonumber(os.getenv("BENCH_STOP_AFTER") or "10000")
local done_file = os.getenv("BENCH_DONE_FILE")
local count = 0

response = function(status, headers, body)
  count = count + 1
  if count == limit then
    if done_file then
      local f = io.open(done_file, "w")
      if f then
        f:write(tostring(count))
        f:close()
      end
    end
    wrk.thread:stop()
  end
end
