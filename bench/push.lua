-- wrk script: realistic NXCC call-log pushes, every callId unique across threads and runs.
-- Usage: wrk -t2 -c64 -d10s -s bench/push.lua http://127.0.0.1:8080 -- TOKEN [PATH] [RATE CONNS]
--        [SPREAD]
-- RATE (pushes/s in total) and CONNS (wrk -c) pace each connection with delay(), for the
-- latency curve; without them wrk sends as fast as the server answers ("-" for RATE and CONNS
-- means unpaced). SPREAD (seconds, default 600) is how far back start times reach: a larger
-- one spreads the calls over many hours, as weeks of traffic are (bench/memory.py).
-- done() prints one JSON line starting with "RESULT " for bench/run.py to read.

local threads = {}
local token, path, rate, connections, spread = "bench-token", "/cc/callback", nil, 1, 600

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  token = args[1] or token
  path = args[2] or path
  rate = tonumber(args[3])
  connections = tonumber(args[4]) or 1
  spread = tonumber(args[5]) or 600
  math.randomseed(os.time() * 1000 + tid * 7919)
  prefix = string.format("%x-%d-%x", os.time(), tid, math.random(0, 2^30))
  counter = 0
end

local agents = {"alice@example.com", "bob@example.com", "wang.li@example.com", "", "chen@example.com"}
local intents = {"转人工-成功", "无意向", "已预约", "号码错误", "Interested"}
local hangups = {"用户挂断", "坐席挂断", "NORMAL_CLEARING", "NO_ANSWER"}

function request()
  counter = counter + 1
  -- NXCC pushes a call when it ends, so start times arrive roughly in order: now, minus the
  -- call's length (up to ten minutes).
  local now = (os.time() * 1000) - math.random(0, spread * 1000)
  local answered = math.random() < 0.7
  local direction = math.random(0, 2)
  local queued = now + math.random(0, 3000)
  local answer = answered and (queued + math.random(1000, 30000)) or 0
  local finish = (answered and answer or queued) + math.random(1000, 300000)
  local body = string.format(
    '{"callId":"%s-%d","agentName":"%s","agentNickName":"坐席%d","answered":%s,' ..
    '"direction":%d,"caller":"852%08d","callee":"1%03d@10.0.0.1:5060",' ..
    '"startTime":%d,"ringTime":%d,"inQueueTime":%d,"outQueueTime":%d,"answerTime":%d,' ..
    '"endTime":%d,"callDuration":%d,"ringDuration":%d,"queueDuration":%d,' ..
    '"hangupBy":%d,"hangupCode":16,"hangupReason":"%s","callStatus":"%s",' ..
    '"intent":"%s","taskId":"16883634528143%05d","orderId":"ORD-%d","other":"",' ..
    '"recordUrl":"https://rec.example.com/%d.mp3","totalCustomerPrice":%.4f}',
    prefix, counter, agents[math.random(#agents)], math.random(1, 40),
    answered and "true" or "false", direction, math.random(0, 99999999),
    math.random(0, 999), now, now + 500, queued, queued + math.random(0, 20000), answer,
    finish, math.floor((finish - now) / 1000), math.random(0, 20), math.random(0, 60),
    math.random(0, 2), hangups[math.random(#hangups)], answered and "ANSWERED" or "NO_ANSWER",
    intents[math.random(#intents)], math.random(0, 99999), counter,
    counter, math.random() * 2)
  return wrk.format("POST", path, {["token"] = token, ["Content-Type"] = "application/json"}, body)
end

function delay()
  if rate == nil then return 0 end
  -- each connection sends rate / connections per second
  return 1000 * connections / rate * (0.5 + math.random())
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
