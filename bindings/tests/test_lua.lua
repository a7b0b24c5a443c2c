-- The Lua bindings (require "kraken"): values, errors with the library's message and code,
-- closed objects, handles collected in any order, callback references released when
-- unregistered, 1,000,000 callbacks without growth, a service and a module driving nodes,
-- plans. Plain asserts, TAP on stdout (meson protocol 'tap'). Run from the source root.
-- (The Lua power module against a running kraken-daemon: bindings/tests/test_python.py.)
local kraken = require "kraken"
local core = kraken._core

local N1 = "7e57c0de-0000-4000-8000-000000000001"
local N2 = "7e57c0de-0000-4000-8000-000000000002"
local IP = "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Ip/Ip"
local MAC = "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Eth/Mac"
local MTU = "type.googleapis.com/IPv4.IPv4OverEthernet/Ifaces/kraken/Eth/Mtu"

local tests = {}
local function test(name, fn) tests[#tests + 1] = {name, fn} end

local function eq(a, b, what)
  if a ~= b then
    error(string.format("%s: expected %s, got %s", what or "value", tostring(b), tostring(a)), 2)
  end
end

-- The error raised by fn(...), which must fail.
local function err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return err
end

local function power_service(engine, on_mutate)
  local svc = engine:add_service("power", {on_mutate = on_mutate or function(s, r) s:complete(r) end})
  svc:declare{id = "discover", mutates = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}}, context = "ALL"}
  svc:declare{id = "poweron", mutates = {{"/PhysState", "POWER_OFF", "POWER_ON"}}, context = "ALL",
              timeout = 30, fail_to = {"/PhysState", "PHYS_HANG"}}
  return svc
end

test("node values are Lua values", function()
  local n = kraken.node(N1, {nodename = "n1", phys_state = "POWER_ON"})
  eq(n.id, N1, "id")
  eq(n:get("/PhysState"), "POWER_ON")
  n:set(IP, "10.0.0.5")
  n:set(MAC, "02:00:00:00:01:01")
  n:set(MTU, 9000)
  eq(n:get(IP), "10.0.0.5")
  eq(n:get(MAC), "02:00:00:00:01:01")
  eq(n:get(MTU), 9000)
  eq(math.type(n:get(MTU)), "integer")
  n:set("/Services/pxe/State", "RUN")
  eq(n:services()[1], "pxe")
  n:unset("/Services/pxe")
  eq(#n:services(), 0)
  eq(n:extensions()[1], "type.googleapis.com/IPv4.IPv4OverEthernet")
  local c = kraken.node_from_json(n:to_json())
  assert(c == n and c:equals(n))
  c:set("/Nodename", "other")
  assert(c ~= n)
  eq(tostring(kraken.node(N2)), 'kraken.Node({"id":"' .. N2 .. '"})')
  eq(kraken.enum_members("PhysState").POWER_ON, 2)
  eq(kraken.canonical_url("/physState"), "/PhysState")
  assert(kraken.node().id ~= kraken.node().id)
end)

test("errors carry code, name and the library's message", function()
  local n = kraken.node(N1)
  local e = err_of(n.get, n, "/Bogus")
  eq(e.code, kraken.ERRORS.PARSE)
  eq(e.name, "KRAKEN_EPARSE")
  eq(tostring(e), "URL '/Bogus': kraken.Node has no field 'Bogus'")
  e = err_of(n.set, n, "/PhysState", "ON")
  eq(e.message, "URL '/PhysState': 'ON' is not a member of enum PhysState")
  eq(e.code, kraken.ERRORS.TYPE)
  local s = kraken.store()
  eq(err_of(s.read, s, N1).code, kraken.ERRORS.NOTFOUND)
  e = err_of(s.read, s, "nope")
  assert(e.message:find("^store_read: invalid node id 'nope': expected a UUID"), e.message)
  s:create(N1)
  eq(err_of(s.create, s, N1).code, kraken.ERRORS.EXISTS)
  e = err_of(s.load, s, "/nonexistent/state.json")
  eq(e.code, kraken.ERRORS.IO)
  e = err_of(n.set, n, "/Nodename", {})
  eq(e.message, "kraken value: cannot use a table (use string, integer or boolean)")
  e = err_of(n.set, n, "/Nodename", 1.5)
  eq(e.message, "kraken value: 1.5 is not an integer")
  -- wrong types at the low layer are Lua errors, not crashes
  assert(not pcall(core.kb_store_count, "not a store"))
  eq(err_of(core.kb_store_count, nil).message, "store_count: no store")
  assert(not pcall(core.kb_lua_callback_new, 42))
  e = err_of(kraken.engine, {bogus = 1})
  eq(e.message, "engine: unknown option 'bogus'")
end)

test("store: load, save, find, listen", function()
  local s = kraken.store()
  s:load("tests/fixtures/cluster4.json")
  s:load_dsc("tests/fixtures/cluster4-dsc.json")
  eq(#s, 5)
  local n1 = s:find("n1")
  assert(s:contains(n1))
  eq(s:read(n1):get("/Nodename"), "n1")
  local changes = {}
  local l = s:listen(function(ch) changes[#changes + 1] = ch end)
  s:set(n1, "/PhysState", "POWER_OFF")
  eq(changes[#changes].kind, "CFG_UPDATE")
  eq(changes[#changes].new, "POWER_OFF")
  l:remove()
  s:set(n1, "/PhysState", "POWER_ON")
  eq(#changes, 1)
  local path = os.tmpname()
  s:save(path)
  local again = kraken.store()
  again:load(path)
  os.remove(path)
  eq(again:to_json(), s:to_json())
  s:delete(n1)
  eq(s:count(), 4)
  eq(err_of(s.find, s, "nobody").code, kraken.ERRORS.NOTFOUND)
  s:close()
  eq(err_of(s.count, s).message, "store_count: the store is closed")
end)

test("calls on closed objects fail with ESTATE", function()
  local e = kraken.engine()
  local st, svc = e.store, power_service(e)
  e:close()
  e:close()
  local err = err_of(st.create, st, N1)
  eq(err.message, "store_create: the store's engine is closed")
  eq(err.code, kraken.ERRORS.STATE)
  err = err_of(svc.discover, svc, N1, "/PhysState", "POWER_ON")
  eq(err.message, "service_discover_text: service 'power' was detached: its engine was freed")
  svc:remove()
  eq(err_of(svc.discover, svc, N1, "/PhysState", "POWER_ON").message,
     "discover: the service was removed")
end)

local function permutations(list, n, fn, prefix, used)
  prefix, used = prefix or {}, used or {}
  if #prefix == n then return fn(prefix) end
  for i, v in ipairs(list) do
    if not used[i] then
      used[i] = true
      prefix[#prefix + 1] = v
      permutations(list, n, fn, prefix, used)
      prefix[#prefix] = nil
      used[i] = false
    end
  end
end

test("handles collected in any order", function()
  local names = {"loop", "store", "engine", "svc", "sub", "listener"}
  local count = 0
  permutations(names, #names, function(order)
    local loop, store = kraken.loop(), kraken.store()
    local engine = kraken.engine{loop = loop, store = store}
    local objs = {loop = loop, store = store, engine = engine, svc = power_service(engine),
                  sub = engine:subscribe(function() end),
                  listener = store:listen(function() end)}
    engine._owned = {}
    store:create(N1, {phys_state = "POWER_ON"})
    loop:step(0)
    for _, name in ipairs(order) do
      local weak = setmetatable({objs[name]._h}, {__mode = "v"})
      objs[name]._h = nil
      collectgarbage()
      assert(weak[1] == nil, name .. "'s handle was not collected")
    end
    count = count + 1
  end)
  eq(count, 720)
  collectgarbage()
end)

test("callbacks: references released when unregistered or the parent freed", function()
  local e = kraken.engine()
  local calls = 0
  local fn = function() calls = calls + 1 end
  local weak = setmetatable({fn}, {__mode = "v"})
  local sub = e:subscribe(fn)
  fn = nil
  e.store:create(N1)
  e:flush()
  assert(calls >= 1)
  collectgarbage()
  assert(weak[1], "the registry keeps the callback while subscribed")
  sub:remove()
  collectgarbage()
  assert(weak[1] == nil, "the callback was not released")
  local before = calls
  e.store:create(N2)
  e:flush()
  e.loop:step(0)
  eq(calls, before)
  local fn2 = function() end
  local weak2 = setmetatable({fn2}, {__mode = "v"})
  e:add_service("s", {on_mutate = fn2})
  fn2 = nil
  e:close()
  collectgarbage()
  assert(weak2[1] == nil, "the engine's free did not release the service's callback")
end)

test("a callback that raises fails its request; the engine goes on", function()
  local reported = {}
  local saved = kraken.on_callback_error
  kraken.on_callback_error = function(where, err) reported[#reported + 1] = where end
  local calls = 0
  local e = kraken.engine{backoff_initial_ms = 10}
  power_service(e, function(s, r)
    calls = calls + 1
    if calls == 1 then error("boom") end
    s:complete(r)
  end)
  local failures = e:subscribe(nil, {types = {"STATE_MUTATION"}})
  e.store:create(N1, {phys_state = "POWER_ON"})
  assert(e.loop:run_until(function() return e.store:get(N1, "/PhysState", "dsc") == "POWER_ON" end, 10))
  kraken.on_callback_error = saved
  eq(reported[1], "service power")
  e:flush()
  local reasons = {}
  for ev in failures:events() do
    if ev.kind == "FAILED" then reasons[#reasons + 1] = ev.message end
  end
  eq(#reasons, 1)
  assert(reasons[1]:find("boom"), reasons[1])
  e:close()
end)

test("1,000,000 callbacks: memory stays flat", function()
  local s = kraken.store()
  s:create(N1)
  local count = 0
  local l = core.kb_store_listen(s._h, core.kb_lua_callback_new(function() count = count + 1 end))
  local set, h, CFG = core.kb_store_set_text, s._h, core.KRAKEN_CFG
  local v = {"a", "b"}
  for i = 1, 10000 do set(h, CFG, N1, "/Nodename", v[i % 2 + 1]) end
  collectgarbage()
  local before = collectgarbage("count")
  for i = 1, 1000000 do set(h, CFG, N1, "/Nodename", v[i % 2 + 1]) end
  collectgarbage()
  local after = collectgarbage("count")
  eq(count, 1010000, "callbacks")
  assert(after - before < 64, string.format("grew by %.1f KiB", after - before))
  core.kb_listener_close(l)
  set(h, CFG, N1, "/Nodename", "c")
  eq(count, 1010000, "callbacks after removal")
end)

test("service: requests, reports, events, status", function()
  local e = kraken.engine{log = function() end, log_level = "DEBUG"}
  local reqs, kept = {}, nil
  local svc = power_service(e, function(s, r)
    reqs[#reqs + 1] = {id = r.id, mutation = r.mutation, node = r.node, to = r.mutates[1].to,
                       nodename = r.cfg:get("/Nodename")}
    kept = r
    s:complete(r)
  end)
  eq(svc:id(), "power")
  local seen = {}
  e:subscribe(function(ev) seen[#seen + 1] = ev end, {types = "DISCOVERY", url = "/Phys*"})
  e.store:create(N1, {nodename = "n1", phys_state = "POWER_ON"})
  assert(e.loop:run_until(function() return e:status(N1).state == "CONVERGED" end, 10))
  eq(reqs[1].mutation, "discover")
  eq(reqs[1].nodename, "n1")
  eq(reqs[2].to, "POWER_ON")
  eq(math.type(reqs[1].id), "integer")
  assert(reqs[2].id > reqs[1].id)
  local st = e:status(N1)
  eq(st.steps[1], "power/discover")
  eq(st.current, 2)
  eq(seen[#seen].new, "POWER_ON")
  eq(seen[#seen].service, "power")
  local sealed = err_of(function() return kept.dsc end)
  assert(sealed.message:find("readable during the callback only"), sealed.message)
  eq(reqs[1].nodename, "n1")
  local late = err_of(svc.report, svc, {node = N1, id = reqs[1].id}, "/PhysState", "POWER_OFF")
  eq(late.code, kraken.ERRORS.STATE)
  svc:discover(N1, "/PhysState", "POWER_OFF")
  eq(e.store:get(N1, "/PhysState", "dsc"), "POWER_OFF")
  assert(e:graph_json(N1):find('"edges"'))
  e:freeze(); assert(e:frozen()); e:thaw()
  e:disable_mutation("power", "poweron")
  e:set_mutation_timeout("power", "discover", 5)
  e:reset_node(N1)
  e:close()
end)

test("module in-process: start, mutate, events, query", function()
  local started, events = 0, 0
  local mod = kraken.module {
    name = "luainproc",
    discoverables = {{"/PhysState", "NODE_OFF", "POWER_OFF"}},
    mutations = {
      {id = "discover", mutates = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}}, context = "ALL"},
      {id = "poweron", mutates = {{"/PhysState", "POWER_OFF", "POWER_ON"}}, context = "ALL"}},
    events = {types = {"DISCOVERY"}},
    on_start = function(m, config) started = started + 1; m:set_state("RUN") end,
    on_mutate = function(m, r) m:complete(r) end,
    on_event = function(m, ev) events = events + 1 end,
  }
  local e = kraken.engine()
  local c = mod:run_in(e, "pwr")
  eq(c:service_id(), "pwr")
  assert(c:connected())
  e.store:create(N1, {phys_state = "POWER_ON"})
  assert(e.loop:run_until(function() return e.store:get(N1, "/PhysState", "dsc") == "POWER_ON" end, 10))
  eq(started, 1)
  assert(events >= 1)
  c:discover_named(N1, "/PhysState", "NODE_OFF")
  eq(c:query(N1, "dsc"):get("/PhysState"), "POWER_OFF")
  c:update_cfg(N1, "/Arch", "arm64")
  eq(e.store:get(N1, "/Arch"), "arm64")
  c:log("hello", "NOTICE")
  c:close()
  eq(err_of(c.discover, c, N1, "/PhysState", "POWER_ON").message, "discover: the module is closed")
  e:close()
end)

test("mutation set plans (SPEC 4.3 set on the fixture cluster)", function()
  local set = kraken.mutation_set()
  local SIM = {["/Platform"] = "sim"}
  set:add("power", {id = "UKtoOFF", mutates = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}},
                    requires = SIM, context = "CHILD"})
  set:add("power", {id = "OFFtoON", mutates = {{"/PhysState", "POWER_OFF", "POWER_ON"}},
                    requires = SIM, context = "CHILD"})
  eq(set:count(), 2)
  local s = kraken.store()
  s:load("tests/fixtures/cluster4.json")
  local n1 = s:read(s:find("n1"))
  n1:unset("/RunState")
  n1:unset("type.googleapis.com/PXE.Client")
  n1:set("/PhysState", "POWER_ON")
  local plan = set:plan(n1)
  eq(table.concat(plan, " -> "), "power/UKtoOFF -> power/OFFtoON")
  n1:set("/PhysState", "PHYS_HANG")
  eq(err_of(set.plan, set, n1).code, kraken.ERRORS.NOPATH)
  assert(set:graph_json():find('"nodes"'))
end)

test("loop: run for a time, stop from a callback", function()
  local loop = kraken.loop()
  local t0 = kraken.now()
  loop:run(0.2)
  assert(kraken.now() - t0 >= 0.15)
  local e = kraken.engine{loop = loop}
  e:subscribe(function() loop:stop() end)
  e.store:create(N1)
  loop:run()                 -- returns because the callback stopped it
  e:close()
end)

print("1.." .. #tests)
local failed = 0
for i, t in ipairs(tests) do
  local ok, err = xpcall(t[2], debug.traceback)
  if ok then
    print(string.format("ok %d - %s", i, t[1]))
  else
    failed = failed + 1
    print(string.format("not ok %d - %s", i, t[1]))
    for line in tostring(err):gmatch("[^\n]+") do print("# " .. line) end
  end
end
os.exit(failed == 0 and 0 or 1)
