-- Trackway bench traffic for wrk (LuaJIT): Tracardi POST /track, Tracify batches, Tracktor GETs,
-- InSend POST /watch/event.
--
-- Run by bench/run.py and bench/scale.py as
--   wrk -t T -c C -d HARD_LIMIT -s bench/traffic.lua http://127.0.0.1:PORT -- key=value ...
-- Arguments (after "--"): duration (seconds of load), connections (per thread), max_requests
-- (per thread), seed,
-- tracardi_source, tracify_source, tracify_key, tracktor_source, insend_source, tracify_share,
-- tracktor_share, insend_share (each request: Tracify, Tracktor or InSend by these shares, else
-- Tracardi), visitors_file (optional: "profile_id session_key" lines, known visitors to start from).
-- Known people (bench/run.py's per-dialect runs): people_file ("n tracktor_id insend_field
-- insend_uid email_hash visit_hash ip_hash ua_hash" lines, written by bench/run.py); with it, every
-- Tracify, Tracktor and InSend request names people of that file: Tracify batches of
-- tracify_events events naming tracify_people of them (tracify_purchase_share: the share of the
-- people whose last event is a purchase), Tracktor GETs and InSend view_product events of one.
-- preload=tracify|tracktor|insend (with people_file and threads): the unmeasured pass before such
-- a run, which names every person once, in file order (Tracify: preload_batch people per batch,
-- one pageview each), spread over the threads; run with max_requests = the number of requests
-- that covers the file.
-- Read mode instead (bench/scale.py): read_file (one profile id a line), admin_token, threads:
-- every thread GETs /api/profiles/{id}/events?limit=100 once for each of its share of the ids.
--
-- Every wrk thread has its own Lua state. Each keeps a pool of the Tracardi visitors it learned
-- from responses and draws, for every Tracardi request: 10 % a brand-new visitor (no profile id,
-- new session key), 20 % a new visit of a known profile (its id, a new session key), 70 % a
-- returning visitor (its id and the session key of a visit it already started). wrk cannot pair
-- a response with its request, so a profile learned from a response is first reused as a new
-- visit (which starts a session this script knows), and only then as a returning visitor.
--
-- Ending without losing anything: at the deadline (or after max_requests), delay(), which wrk
-- calls before each request of a connection, holds that connection back instead. When all of the
-- thread's connections are held, none has a request in flight: the thread writes "bench: drained"
-- to stderr and stops, and bench/run.py ends wrk with SIGINT. So every request that reached the
-- server got its answer counted, and the database check can be exact. A hold is counted only
-- against a response not yet followed by a delay() call: wrk also calls delay() when it reconnects
-- a connection the server closed (uvicorn closes idle ones after 5 s), and that must not count
-- twice. (Counting requests in request() would not do either: wrk calls it again when a write
-- would block before sending anything.) A request that fails without an answer keeps the thread
-- from draining; bench/run.py then stops wrk at its time limit and says so.
-- done() prints one line "BENCH_JSON {...}" with the per-thread counters summed.

local ffi = require("ffi")
ffi.cdef([[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]])
local CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
local timespec = ffi.new("bench_timespec")

local function clock(id)
  ffi.C.clock_gettime(id, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local random, floor, format, concat = math.random, math.floor, string.format, table.concat
local tohex, find = bit.tohex, string.find

-- --- constants ------------------------------------------------------------------------------

local HOLD_MS = 3600 * 1000 -- delay() past the deadline: no further request is sent
local POOL_LIMIT = 20000 -- visitors remembered per thread
local SAMPLE_LIMIT = 3

local USER_AGENTS = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
}
local ORIGIN = "https://shop.acme-outdoor.example"
local PAGES = {
  { "/", "Acme Outdoor - Gear for every trail" },
  { "/collections/tents", "Tents - Acme Outdoor" },
  { "/collections/backpacks", "Backpacks - Acme Outdoor" },
  { "/products/alpine-2p-tent", "Alpine 2P Tent - Acme Outdoor" },
  { "/products/ridge-45l-backpack", "Ridge 45L Backpack - Acme Outdoor" },
  { "/blog/how-to-pick-a-sleeping-bag", "How to pick a sleeping bag - Acme Outdoor Journal" },
  { "/cart", "Your cart - Acme Outdoor" },
}
local REFERRERS = {
  "https://www.google.com/", "https://duckduckgo.com/", "https://www.instagram.com/",
  "https://news.ycombinator.com/", "",
}
local CAMPAIGNS = { "spring_sale", "newsletter_w17", "retargeting", "brand" }
local PRODUCTS = {
  { "Alpine 2P Tent", "tents" }, { "Ridge 45L Backpack", "backpacks" },
  { "Summit Down Sleeping Bag", "sleeping-bags" }, { "Trail Runner GTX", "shoes" },
}
local TRACKTOR_ACTIONS = { "page_view", "search", "add_to_cart", "signup", "video_play" }
-- A known person's events in a Tracify batch, in order; "last" is a purchase or a pageview.
local TRACIFY_STEPS = { "pageview", "productview", "productview", "addtocart", "last" }

-- --- per-thread state (globals: thread:get() reads them for done()) ---------------------------

tid = tid or 0
sent, responses, ok, held, awaiting, delays = 0, 0, 0, 0, 0, 0
tracardi_ok, tracardi_events, tracify_ok, tracify_events, tracktor_ok, tracktor_events = 0, 0, 0, 0, 0, 0
insend_ok, insend_events = 0, 0
segment_ok, segment_events, segment_sent = 0, 0, 0
new_visitor, new_session, returning, tracify_sent, tracktor_sent, insend_sent = 0, 0, 0, 0, 0, 0
preload_sent = 0 -- requests of the preload pass (preload=...)
idle_closes = 0 -- held connections the server closed (wrk counts each as a read error)
unreadable = 0 -- 2xx answers whose body could not be read
reads_ok = 0 -- read mode: 2xx answers holding an "items" list
status = {} -- flat: ["503"] = n (wrk cannot hand nested tables to done())
samples = ""
t_first, t_last, drained = 0, 0, 0

local cfg = {}
local host_header
local deadline
local visitors_pid, visitors_key, n_visitors = {}, {}, 0 -- visits this thread started
local fresh, n_fresh = {}, 0 -- learned profiles without a visit of ours yet
local known = {} -- every Tracardi profile id seen
local tracify_pool, n_tracify_pool = {}, 0
local tracktor_pool, n_tracktor_pool = {}, 0
local order_seq = 0
local read_ids, n_read_ids = {}, 0
local people, n_people = {}, 0 -- known people (people_file), in file order
local people_order = {} -- a permutation of 1..n_people, for drawing distinct people
local profile_only_dialect = "tracktor" -- who answers {"profile":{"id":...}} alone in this run

-- --- helpers --------------------------------------------------------------------------------

local function hex32()
  return tohex(random(0, 2147483647) * 2 + random(0, 1), 8)
end

-- bit.tohex and math.random are compiled by LuaJIT; string.format is not.
local function uuid4()
  return tohex(random(0, 2147483647) * 2 + random(0, 1), 8) .. "-" .. tohex(random(0, 65535), 4) .. "-4"
    .. tohex(random(0, 4095), 3) .. "-" .. tohex(32768 + random(0, 16383), 4) .. "-"
    .. tohex(random(0, 65535), 4) .. tohex(random(0, 2147483647) * 2 + random(0, 1), 8)
end

local function sha256_like()
  return hex32() .. hex32() .. hex32() .. hex32() .. hex32() .. hex32() .. hex32() .. hex32()
end

local function pick(list)
  return list[random(1, #list)]
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return format("\\u%04x", c:byte())
  end) .. '"'
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c)
    return format("%%%02X", c:byte())
  end))
end

local iso_second, iso_prefix = -1, ""
local MILLIS = {}
for ms = 0, 999 do
  MILLIS[ms] = format(".%03dZ", ms)
end

local function iso_now()
  local now = clock(CLOCK_REALTIME)
  local seconds = floor(now)
  if seconds ~= iso_second then
    iso_second, iso_prefix = seconds, os.date("!%Y-%m-%dT%H:%M:%S", seconds)
  end
  return iso_prefix .. MILLIS[floor((now - seconds) * 1000)]
end

local function http_request(method, path, headers, body)
  local head = method .. " " .. path .. " HTTP/1.1\r\nHost: " .. host_header .. "\r\n" .. headers
  if body then
    return head .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
  end
  return head .. "\r\n"
end

local function remember_visit(pid, key)
  if n_visitors < POOL_LIMIT then
    n_visitors = n_visitors + 1
    visitors_pid[n_visitors], visitors_key[n_visitors] = pid, key
  else
    local i = random(1, n_visitors)
    visitors_pid[i], visitors_key[i] = pid, key
  end
end

local function sample(text)
  if #samples < 600 and select(2, samples:gsub("\n", "")) < SAMPLE_LIMIT then
    samples = samples .. text:sub(1, 200):gsub("[\r\n]", " ") .. "\n"
  end
end

-- --- Tracardi: POST /track ------------------------------------------------------------------

local function tracardi_body(session_key, profile_id)
  local page = pick(PAGES)
  local url = "https://shop.acme-outdoor.example" .. page[1]
  if random() < 0.3 then
    url = url .. "?utm_source=google&utm_medium=cpc&utm_campaign=" .. pick(CAMPAIGNS)
  end
  local product = pick(PRODUCTS)
  local now = iso_now()
  local parts = {
    '{"source":{"id":"', cfg.tracardi_source, '"},"session":{"id":"', session_key, '"},',
    '"context":{"page":{"url":"', url, '","path":"', page[1], '","title":"', page[2],
    '","referrer":"', pick(REFERRERS), '"},',
    '"browser":{"language":"en-US","cookieEnabled":true,"timeZone":"Europe/Berlin","platform":"Win32"},',
    '"screen":{"width":1920,"height":1080,"colorDepth":24},',
    '"tracker":{"name":"tracardi-js","version":"0.9.1"}},',
    '"events":[',
    '{"id":"', uuid4(), '","type":"page-view","time":"', now, '","properties":{"title":"', page[2],
    '","loadTimeMs":', random(120, 2400), '}},',
    '{"id":"', uuid4(), '","type":"scroll-depth","time":"', now, '","properties":{"percent":',
    25 * random(1, 4), ',"visibleMs":', random(1, 90000), '}},',
    '{"id":"', uuid4(), '","type":"product-view","time":"', now, '","properties":{"sku":"SKU-',
    random(10000, 99999), '","name":"', product[1], '","category":"', product[2], '","price":',
    format("%.2f", 19 + random() * 480), ',"currency":"EUR","inStock":', random() < 0.9 and "true" or "false",
    '}}],"options":{}',
  }
  if profile_id then
    parts[#parts + 1] = ',"profile":{"id":"' .. profile_id .. '"}'
  end
  parts[#parts + 1] = "}"
  return concat(parts)
end

local function tracardi_request()
  local draw = random()
  local profile_id, session_key
  if draw >= 0.3 and n_visitors > 0 then
    returning = returning + 1
    local i = random(1, n_visitors)
    profile_id, session_key = visitors_pid[i], visitors_key[i]
  elseif draw >= 0.1 and (n_fresh > 0 or n_visitors > 0) then
    new_session = new_session + 1
    session_key = uuid4()
    if n_fresh > 0 then
      profile_id = fresh[n_fresh]
      fresh[n_fresh] = nil
      n_fresh = n_fresh - 1
      remember_visit(profile_id, session_key)
    else
      local i = random(1, n_visitors)
      profile_id = visitors_pid[i]
      visitors_key[i] = session_key
    end
  else
    new_visitor = new_visitor + 1
    session_key = uuid4()
  end
  local headers = "Content-Type: application/json\r\nUser-Agent: " .. pick(USER_AGENTS)
    .. "\r\nOrigin: " .. ORIGIN .. "\r\n"
  return http_request("POST", "/track", headers, tracardi_body(session_key, profile_id))
end

-- --- Tracify: POST /tracify/events, 5-event batches -----------------------------------------

-- A shop backend's batch holds events of a few recent visitors; two batches in flight at once
-- rarely share one. New visitors until the pool holds MIN_POOL, then 30 % new, 70 % known.
local MIN_POOL, NEW_SHARE = 100, 0.3

local function tracify_visitor()
  if n_tracify_pool < MIN_POOL or random() < NEW_SHARE then
    local visitor = { ip = sha256_like(), ua = sha256_like(), visit = sha256_like(), email = sha256_like() }
    if n_tracify_pool < POOL_LIMIT then
      n_tracify_pool = n_tracify_pool + 1
      tracify_pool[n_tracify_pool] = visitor
    else
      tracify_pool[random(1, n_tracify_pool)] = visitor
    end
    return visitor
  end
  return tracify_pool[random(1, n_tracify_pool)]
end

-- with_email: the email hash on every event (known people); else on purchases only.
local function tracify_event(visitor, kind, stamp, with_email)
  local page = pick(PAGES)
  local product = pick(PRODUCTS)
  local identity = '{"' .. visitor.ip .. '":3,"' .. visitor.ua .. '":4,"' .. visitor.visit .. '":2'
  local data = '"origin":"web","Referer":"' .. pick(REFERRERS) .. '"'
  if with_email or kind == "purchase" then
    identity = identity .. ',"' .. visitor.email .. '":1'
  end
  if kind == "purchase" then
    order_seq = order_seq + 1
    local amount = format("%.2f", 19 + random() * 480)
    -- Unique: the run's seed, the wrk process (phase), the thread, a counter and a random part.
    data = data .. ',"order_id":"bench-' .. cfg.seed .. "-" .. cfg.phase .. tid .. "-" .. order_seq .. "-" .. hex32()
      .. '","currency":"EUR","amount":"' .. amount .. '","ITEM1":"' .. product[1]
      .. '","AMT1":"' .. amount .. '","QTY1":"1"'
  elseif kind ~= "pageview" then
    data = data .. ',"product_id":"SKU-' .. random(10000, 99999) .. '","product_name":"' .. product[1] .. '"'
  end
  return '{"url":"https://shop.acme-outdoor.example' .. page[1] .. '?utm_source=newsletter&trc_click=' .. hex32()
    .. '","customer_site_id":"' .. cfg.tracify_source .. '","identity_data":' .. identity .. '},"datetime":"'
    .. stamp .. '","type":"' .. kind .. '","data":{' .. data .. "}}"
end

local function tracify_post(events)
  local headers = "Content-Type: application/json\r\nUser-Agent: acme-shop-backend/2.3\r\nX-API-Key: "
    .. cfg.tracify_key .. "\r\n"
  return http_request("POST", "/tracify/events", headers, '{"events":[' .. concat(events, ",") .. "]}")
end

local function tracify_request()
  tracify_sent = tracify_sent + 1
  local stamp = os.date("!%Y-%m-%d %H:%M:%S")
  local first, second = tracify_visitor(), tracify_visitor()
  local last = random() < 0.5 and "purchase" or "pageview"
  return tracify_post({
    tracify_event(first, "pageview", stamp), tracify_event(first, "productview", stamp),
    tracify_event(first, "addtocart", stamp), tracify_event(second, "pageview", stamp),
    tracify_event(second, last, stamp),
  })
end

-- k distinct known people (a partial Fisher-Yates shuffle of people_order).
local function draw_people(k)
  local chosen = {}
  for j = 1, k do
    local r = random(j, n_people)
    people_order[j], people_order[r] = people_order[r], people_order[j]
    chosen[j] = people[people_order[j]]
  end
  return chosen
end

-- A shop backend's batch of known people: tracify_events events naming tracify_people people,
-- interleaved as they happened (each person's steps in TRACIFY_STEPS order), every event with the
-- person's email and visit hashes.
local function tracify_people_request()
  tracify_sent = tracify_sent + 1
  local stamp = os.date("!%Y-%m-%d %H:%M:%S")
  local chosen = draw_people(cfg.tracify_people)
  local last = {}
  for j = 1, cfg.tracify_people do
    last[j] = random() < cfg.tracify_purchase_share and "purchase" or "pageview"
  end
  local events, n = {}, 0
  for step = 1, cfg.tracify_events / cfg.tracify_people do
    local kind = TRACIFY_STEPS[(step - 1) % #TRACIFY_STEPS + 1]
    for j = 1, cfg.tracify_people do
      n = n + 1
      events[n] = tracify_event(chosen[j], kind == "last" and last[j] or kind, stamp, true)
    end
  end
  return tracify_post(events)
end

-- Preload: people unit * preload_batch + 1 ... (file order, wrapping), one pageview each.
local function tracify_preload_request(unit)
  tracify_sent = tracify_sent + 1
  local stamp = os.date("!%Y-%m-%d %H:%M:%S")
  local events = {}
  for j = 1, cfg.preload_batch do
    events[j] = tracify_event(people[(unit * cfg.preload_batch + j - 1) % n_people + 1], "pageview", stamp, true)
  end
  return tracify_post(events)
end

-- --- Tracktor: GET /track?sid&id&action&data --------------------------------------------------

local function tracktor_get(person, action)
  tracktor_sent = tracktor_sent + 1
  local data = '{"page":"' .. pick(PAGES)[1] .. '","ms":' .. random(1, 60000) .. ',"plan":"trial"}'
  local path = "/track?sid=" .. urlencode(cfg.tracktor_source) .. "&id=" .. urlencode(person)
    .. "&action=" .. action .. "&data=" .. urlencode(data)
  return http_request("GET", path, "User-Agent: " .. pick(USER_AGENTS) .. "\r\nAccept: application/json\r\n")
end

local function tracktor_request()
  if n_people > 0 then
    return tracktor_get(people[random(1, n_people)].tracktor, pick(TRACKTOR_ACTIONS))
  end
  local person
  if n_tracktor_pool < MIN_POOL or random() < NEW_SHARE then
    if random() < 0.6 then
      person = "a-" .. hex32() .. hex32() .. "x" .. tid
    else
      person = "user-" .. random(1, 1000000000)
    end
    if n_tracktor_pool < POOL_LIMIT then
      n_tracktor_pool = n_tracktor_pool + 1
      tracktor_pool[n_tracktor_pool] = person
    end
  else
    person = tracktor_pool[random(1, n_tracktor_pool)]
  end
  return tracktor_get(person, pick(TRACKTOR_ACTIONS))
end

-- --- Segment: POST /v1/batch as the server SDKs send it ------------------------------------------
-- segment_events calls naming segment_people users of a pool of segment_pool ids (new ones become
-- profiles, later draws find them): per user a page, then tracks, interleaved as they happened.
-- Basic auth with the write key, as analytics-python and rudder-sdk-python send it. A 2xx is
-- {"success":true}: the batch is all or nothing, and messageIds are fresh, so every call stored.

local SEGMENT_TRACKS = { "Product Viewed", "Product Added", "Checkout Started", "Order Completed" }
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local segment_auth

local function base64(s)
  return ((s:gsub(".", function(c)
    local byte, bits = c:byte(), ""
    for i = 8, 1, -1 do
      bits = bits .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0")
    end
    return bits
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(bits)
    if #bits < 6 then
      return ""
    end
    local n = 0
    for i = 1, 6 do
      n = n + (bits:sub(i, i) == "1" and 2 ^ (6 - i) or 0)
    end
    return B64:sub(n + 1, n + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

local function segment_call(user, step, now)
  local page = pick(PAGES)
  local common = '"messageId":"' .. uuid4() .. '","userId":"' .. user .. '","timestamp":"' .. now
    .. '","context":{"library":{"name":"analytics-python","version":"2.4.0"},"page":{"url":"' .. ORIGIN
    .. page[1] .. '","path":"' .. page[1] .. '","title":"' .. page[2] .. '"}}'
  if step == 1 then
    return '{"type":"page","name":"' .. page[2] .. '",' .. common .. "}"
  end
  local product = pick(PRODUCTS)
  return '{"type":"track","event":"' .. SEGMENT_TRACKS[(step - 2) % #SEGMENT_TRACKS + 1] .. '",'
    .. '"properties":{"product":"' .. product[1] .. '","category":"' .. product[2] .. '","price":'
    .. format("%.2f", 19 + random() * 480) .. "}," .. common .. "}"
end

local function segment_request()
  segment_sent = segment_sent + 1
  local now = iso_now()
  local users = {}
  for j = 1, cfg.segment_people do
    users[j] = "seg-user-" .. random(1, cfg.segment_pool)
  end
  local calls, n = {}, 0
  for step = 1, cfg.segment_events / cfg.segment_people do
    for j = 1, cfg.segment_people do
      n = n + 1
      calls[n] = segment_call(users[j], step, now)
    end
  end
  local body = '{"batch":[' .. concat(calls, ",") .. '],"sentAt":"' .. now .. '"}'
  local headers = "Content-Type: application/json\r\nAuthorization: Basic " .. segment_auth
    .. "\r\nUser-Agent: analytics-python/2.4.0\r\n"
  return http_request("POST", "/v1/batch", headers, body)
end

-- --- InSend: POST /watch/event, view_product of a known visitor or guest ---------------------

local function insend_request(person)
  insend_sent = insend_sent + 1
  local page, product = pick(PAGES), pick(PRODUCTS)
  local data = '{"type":"view_product","url":"' .. ORIGIN .. page[1] .. '","domain":"shop.acme-outdoor.example",'
    .. '"path":"' .. page[1] .. '","title":"' .. page[2] .. '","referrer":"' .. pick(REFERRERS) .. '",'
    .. '"properties":{"product_id":"SKU-' .. random(10000, 99999) .. '","product_name":"' .. product[1]
    .. '","category":"' .. product[2] .. '","price":' .. format("%.2f", 19 + random() * 480) .. "}}"
  local body = "app_key=" .. urlencode(cfg.insend_source) .. "&" .. person.insend_field .. "="
    .. urlencode(person.insend_uid) .. "&data=" .. urlencode(data)
  local headers = "Content-Type: application/x-www-form-urlencoded\r\nUser-Agent: " .. pick(USER_AGENTS)
    .. "\r\nOrigin: " .. ORIGIN .. "\r\n"
  return http_request("POST", "/watch/event", headers, body)
end

-- --- the preload pass (preload=...): every known person once ---------------------------------

local function preload_request()
  preload_sent = preload_sent + 1
  local unit = (preload_sent - 1) * cfg.threads + (tid - 1) -- 0-based, across the threads
  if cfg.preload == "tracify" then
    return tracify_preload_request(unit)
  end
  local person = people[unit % n_people + 1]
  if cfg.preload == "tracktor" then
    return tracktor_get(person.tracktor, "page_view")
  end
  return insend_request(person)
end

-- --- wrk hooks ------------------------------------------------------------------------------

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

function init(args)
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then
      cfg[key] = value
    end
  end
  cfg.duration = tonumber(cfg.duration or "15")
  cfg.max_requests = tonumber(cfg.max_requests or "1000000")
  cfg.connections = tonumber(cfg.connections or error("connections= (per thread) is required"))
  cfg.seed = tonumber(cfg.seed or "1")
  cfg.tracify_share = tonumber(cfg.tracify_share or "0")
  cfg.tracktor_share = tonumber(cfg.tracktor_share or "0")
  cfg.insend_share = tonumber(cfg.insend_share or "0")
  cfg.segment_share = tonumber(cfg.segment_share or "0")
  cfg.segment_events = tonumber(cfg.segment_events or "20")
  cfg.segment_people = tonumber(cfg.segment_people or "5")
  cfg.segment_pool = tonumber(cfg.segment_pool or "3000")
  if cfg.segment_share > 0 then
    if not cfg.segment_source then
      error("Segment requests need segment_source")
    end
    segment_auth = base64(cfg.segment_source .. ":")
  end
  cfg.threads = tonumber(cfg.threads or "1")
  cfg.phase = cfg.preload and "p" or "m"
  cfg.tracify_people = tonumber(cfg.tracify_people or "10")
  cfg.tracify_events = tonumber(cfg.tracify_events or "50")
  cfg.tracify_purchase_share = tonumber(cfg.tracify_purchase_share or "0.2")
  cfg.preload_batch = tonumber(cfg.preload_batch or "50")
  if (cfg.tracify_share > 0 or cfg.preload == "tracify") and not (cfg.tracify_source and cfg.tracify_key) then
    error("Tracify requests need tracify_source and tracify_key")
  end
  if (cfg.tracktor_share > 0 or cfg.preload == "tracktor") and not cfg.tracktor_source then
    error("Tracktor requests need tracktor_source")
  end
  if cfg.insend_share > 0 or cfg.preload == "insend" then
    if not (cfg.insend_source and cfg.people_file) then
      error("InSend requests need insend_source and people_file")
    end
    -- Tracktor and InSend both answer {"profile":{"id":...}} alone: one run may send one of them.
    if cfg.tracktor_share > 0 or cfg.preload == "tracktor" then
      error("a run sends Tracktor or InSend requests, not both: their answers look alike")
    end
    profile_only_dialect = "insend"
  end
  if cfg.preload and not (cfg.people_file and (cfg.preload == "tracify" or cfg.preload == "tracktor"
      or cfg.preload == "insend")) then
    error("preload=tracify|tracktor|insend needs people_file")
  end
  if cfg.tracify_events % cfg.tracify_people ~= 0 then
    error("tracify_events must be a multiple of tracify_people")
  end
  math.randomseed(cfg.seed * 1000003 + tid * 7919 + floor(clock(CLOCK_REALTIME) * 1000) % 1000000)
  host_header = wrk.host .. ":" .. (wrk.port or "80")
  if cfg.visitors_file and cfg.visitors_file ~= "" then
    local line_no = 0
    for line in io.lines(cfg.visitors_file) do
      line_no = line_no + 1
      local pid, key = line:match("^(%S+)%s+(%S+)$")
      if pid and n_visitors < POOL_LIMIT then
        remember_visit(pid, key)
        known[pid] = true
      end
    end
  end
  if cfg.people_file and cfg.people_file ~= "" then
    for line in io.lines(cfg.people_file) do
      local _, tracktor, field, uid, email, visit, ip, ua =
        line:match("^(%d+) (%S+) (%S+) (%S+) (%x+) (%x+) (%x+) (%x+)$")
      if tracktor then
        n_people = n_people + 1
        people[n_people] = {
          tracktor = tracktor, insend_field = field, insend_uid = uid,
          email = email, visit = visit, ip = ip, ua = ua,
        }
        people_order[n_people] = n_people
      end
    end
    if n_people < cfg.tracify_people then
      error("people_file holds " .. n_people .. " people, fewer than tracify_people")
    end
  end
  if cfg.read_file and cfg.read_file ~= "" then
    local threads, line_no = tonumber(cfg.threads or "1"), 0
    for line in io.lines(cfg.read_file) do
      if line ~= "" then
        if line_no % threads == tid - 1 then
          n_read_ids = n_read_ids + 1
          read_ids[n_read_ids] = line
        end
        line_no = line_no + 1
      end
    end
    cfg.max_requests = math.min(cfg.max_requests, n_read_ids)
  end
  deadline = clock(CLOCK_MONOTONIC) + cfg.duration
end

local function stopping()
  return sent >= cfg.max_requests or clock(CLOCK_MONOTONIC) >= deadline
end

function delay()
  delays = delays + 1
  local after_response = awaiting > 0
  if after_response then
    awaiting = awaiting - 1
  end
  if not stopping() then
    return 0
  end
  if after_response then
    held = held + 1
  else
    -- A held connection reconnecting: the server closed it while it was idle. (A connection whose
    -- request failed would reconnect here too, but then the thread can never drain, and
    -- bench/run.py says so.)
    idle_closes = idle_closes + 1
  end
  if held >= cfg.connections and drained == 0 then
    drained = 1
    io.stderr:write("bench: drained\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
  return HOLD_MS
end

function request()
  if delays == 0 then
    -- wrk calls request() once on the first thread before starting, only to check that it makes
    -- one HTTP request (script_verify_request); this one is never sent. Connections always ask
    -- delay() before their first request, so a call before any delay() is that check.
    return http_request("GET", "/healthz", "")
  end
  local now = clock(CLOCK_MONOTONIC)
  if sent == 0 then
    t_first = now
  end
  sent = sent + 1
  if n_read_ids > 0 then
    local path = "/api/profiles/" .. urlencode(read_ids[(sent - 1) % n_read_ids + 1]) .. "/events?limit="
      .. (cfg.read_limit or "100")
    return http_request("GET", path, "Authorization: Bearer " .. cfg.admin_token .. "\r\nAccept: application/json\r\n")
  end
  if cfg.preload then
    return preload_request()
  end
  local draw = random()
  if draw < cfg.segment_share then
    return segment_request()
  end
  draw = draw - cfg.segment_share
  if draw < cfg.tracify_share then
    return n_people > 0 and tracify_people_request() or tracify_request()
  elseif draw < cfg.tracify_share + cfg.tracktor_share then
    return tracktor_request()
  elseif draw < cfg.tracify_share + cfg.tracktor_share + cfg.insend_share then
    return insend_request(people[random(1, n_people)])
  end
  return tracardi_request()
end

function response(code, headers, body)
  responses = responses + 1
  awaiting = awaiting + 1
  t_last = clock(CLOCK_MONOTONIC)
  local key = tostring(code)
  status[key] = (status[key] or 0) + 1
  if code >= 200 and code < 300 then
    ok = ok + 1
    if n_read_ids > 0 then
      if body:find('"items":[', 1, true) then
        reads_ok = reads_ok + 1
      else
        unreadable = unreadable + 1
      end
      return
    end
    local accepted = body:match('"accepted":(%d+)')
    if body == '{"success":true}' then
      segment_ok = segment_ok + 1
      segment_events = segment_events + cfg.segment_events
    elseif accepted then
      tracify_ok = tracify_ok + 1
      tracify_events = tracify_events + tonumber(accepted)
    else
      local events = body:match('"events":%[(.-)%]')
      if events then
        tracardi_ok = tracardi_ok + 1
        if events ~= "" then
          local count, at = 1, find(events, ",", 1, true)
          while at do
            count, at = count + 1, find(events, ",", at + 1, true)
          end
          tracardi_events = tracardi_events + count
        end
        local pid = body:match('"profile":{"id":"([^"]+)"')
        if pid and not known[pid] then
          known[pid] = true
          n_fresh = n_fresh + 1
          fresh[n_fresh] = pid
        end
      elseif body:find('"profile":{"id":"', 1, true) then
        -- Tracktor's /track and InSend's view_product store one event per 2xx.
        if profile_only_dialect == "insend" then
          insend_ok = insend_ok + 1
          insend_events = insend_events + 1
        else
          tracktor_ok = tracktor_ok + 1
          tracktor_events = tracktor_events + 1
        end
      else
        unreadable = unreadable + 1
        sample("unreadable 2xx body: " .. body)
      end
    end
  else
    sample("HTTP " .. key .. ": " .. body)
  end
end

-- --- the summary ------------------------------------------------------------------------------

local COUNTERS = {
  "sent", "responses", "ok", "held", "unreadable", "reads_ok",
  "tracardi_ok", "tracardi_events", "tracify_ok", "tracify_events", "tracktor_ok", "tracktor_events",
  "insend_ok", "insend_events", "segment_ok", "segment_events", "segment_sent", "idle_closes",
  "new_visitor", "new_session", "returning", "tracify_sent", "tracktor_sent", "insend_sent", "drained",
}

function done(summary, latency, requests)
  local totals, codes, texts = {}, {}, {}
  local first, last = nil, 0
  for _, name in ipairs(COUNTERS) do
    totals[name] = 0
  end
  for _, thread in ipairs(threads) do
    for _, name in ipairs(COUNTERS) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
    for code, n in pairs(thread:get("status") or {}) do
      codes[code] = (codes[code] or 0) + n
    end
    local started, ended = thread:get("t_first") or 0, thread:get("t_last") or 0
    if started > 0 and (first == nil or started < first) then
      first = started
    end
    if ended > last then
      last = ended
    end
    texts[#texts + 1] = thread:get("samples") or ""
  end
  local out = {}
  for _, name in ipairs(COUNTERS) do
    out[#out + 1] = format('"%s":%d', name, totals[name])
  end
  local status_parts = {}
  for code, n in pairs(codes) do
    status_parts[#status_parts + 1] = format('"%s":%d', code, n)
  end
  local sample_parts = {}
  for line in concat(texts):gmatch("[^\n]+") do
    sample_parts[#sample_parts + 1] = json_string(line)
  end
  local errors = summary.errors
  out[#out + 1] = format('"elapsed_s":%.6f', first and (last - first) or 0)
  out[#out + 1] = format('"threads":%d', #threads)
  out[#out + 1] = '"status":{' .. concat(status_parts, ",") .. "}"
  out[#out + 1] = '"samples":[' .. concat(sample_parts, ",") .. "]"
  out[#out + 1] = format('"wrk_requests":%d,"wrk_duration_s":%.6f', summary.requests, summary.duration / 1e6)
  out[#out + 1] = format('"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}',
    errors.connect, errors.read, errors.write, errors.timeout)
  out[#out + 1] = format('"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"mean":%.3f}',
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000)
  io.write("BENCH_JSON {" .. concat(out, ",") .. "}\n")
end
