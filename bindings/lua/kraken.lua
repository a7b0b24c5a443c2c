-- The Lua layer of libkraken's bindings, embedded in kraken.so and run by require "kraken"
-- with the SWIG low layer as its argument. Objects are tables with methods; values are Lua
-- values: enum members by name, IPv4/MAC/UUID as strings, integers as integers, records, maps
-- and lists as their JSON text. Errors are raised as tables {code=, name=, message=} whose
-- tostring() is the library's message. See doc/BINDINGS.md.
local core = ...
local M = {}

local T = {bool = core.KRAKEN_T_BOOL, uuid = core.KRAKEN_T_UUID, bytes = core.KRAKEN_T_BYTES}
local INTS = {[core.KRAKEN_T_INT32] = true, [core.KRAKEN_T_INT64] = true,
              [core.KRAKEN_T_UINT32] = true, [core.KRAKEN_T_UINT64] = true}

-- ---- errors and callbacks ---------------------------------------------------------------------

-- Raise a kraken error of this layer (same shape as the C layer's).
local function raise(code, fmt, ...)
  local err = {code = code, name = core.kb_err_name(code), message = string.format(fmt, ...)}
  error(setmetatable(err, {__tostring = function(e) return e.message end,
                           __name = "kraken.Error"}), 3)
end

--- Called as handler(where, err) when a callback raises; the engine goes on.
function M.on_callback_error(where, err)
  io.stderr:write(string.format("kraken: error in %s callback: %s\n", where, tostring(err)))
end

-- A C callback object running fn(call) under xpcall; on_error(call, err) after a report.
local function callback(where, fn, on_error)
  return core.kb_lua_callback_new(function(call)
    local ok, err = xpcall(fn, debug.traceback, call)
    if not ok then
      pcall(M.on_callback_error, where, err)
      if on_error then pcall(on_error, call, err) end
    end
  end)
end

-- ---- values ------------------------------------------------------------------------------------

local function to_text(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "boolean" then return v and "true" or "false" end
  if math.type(v) == "integer" then return string.format("%d", v) end
  if t == "number" then raise(core.KRAKEN_EINVAL, "kraken value: %s is not an integer", v) end
  raise(core.KRAKEN_EINVAL, "kraken value: cannot use a %s (use string, integer or boolean)", t)
end

local function from_text(ktype, text)
  if text == nil then return nil end
  if ktype == T.bool then return text == "true" end
  if INTS[ktype] then return math.tointeger(tonumber(text)) end
  return text
end
M.to_text, M.from_text = to_text, from_text

local function lines(text)
  local out = {}
  if text then for line in string.gmatch(text, "[^\n]+") do out[#out + 1] = line end end
  return out
end

local function id_of(node)
  if type(node) == "table" and node.id then return node.id end
  if type(node) == "string" then return node end
  raise(core.KRAKEN_EINVAL, "node id: expected a UUID string or a node, got %s", type(node))
end

local function kind_of(kind)
  kind = kind or "cfg"
  if kind == "cfg" then return core.KRAKEN_CFG end
  if kind == "dsc" then return core.KRAKEN_DSC end
  raise(core.KRAKEN_EINVAL, "state kind '%s': expected 'cfg' or 'dsc'", tostring(kind))
end

-- {number = name} of the constants with a prefix, and name -> number.
local function names(prefix)
  local by_number = {}
  for k, v in pairs(core) do
    if type(k) == "string" and k:sub(1, #prefix) == prefix and math.type(v) == "integer" then
      by_number[v] = k:sub(#prefix + 1)
    end
  end
  return by_number
end
local EVENT_TYPES, CHANGE_KINDS = names("KRAKEN_EVENT_"), names("KRAKEN_CHANGE_")
EVENT_TYPES[core.KRAKEN_EVENT_MASK_ALL] = nil
local MUTATION_KINDS, SYNC_KINDS = names("KRAKEN_MUTATION_"), names("KRAKEN_SYNC_")
local SERVICE_STATES, LOG_LEVELS = names("KRAKEN_SERVICE_"), names("KRAKEN_LOG_")
local CONTEXTS = names("KRAKEN_CONTEXT_")

local function number_of(map, v, what)
  if math.type(v) == "integer" and map[v] then return v end
  for n, name in pairs(map) do if name == string.upper(tostring(v)) then return n end end
  raise(core.KRAKEN_EINVAL, "%s: unknown name '%s'", what, tostring(v))
end

local function event_mask(types)
  if types == nil then return 0 end
  if type(types) ~= "table" then types = {types} end
  local mask = 0
  for _, t in ipairs(types) do mask = mask | (1 << number_of(EVENT_TYPES, t, "event type")) end
  return mask
end

local function ms(seconds) return seconds and math.max(1, math.floor(seconds * 1000 + 0.5)) or 0 end

local function class(name)
  local c = {}
  c.__index = c
  c.__name = "kraken." .. name
  M[name] = c
  return c
end

-- ---- loop ---------------------------------------------------------------------------------------

local Loop = class("Loop")

--- A libevent loop.
function M.loop()
  return setmetatable({_h = core.kb_loop_new()}, Loop)
end

--- Run what is ready, waiting up to timeout s (nil: until something happens). True if events ran.
function Loop:step(timeout)
  return core.kb_loop_step(self._h, timeout and math.floor(timeout * 1000) or -1) == 1
end

--- Run until stop() or timeout s.
function Loop:run(timeout)
  self._stopped = false
  if timeout then core.kb_loop_run_for(self._h, ms(timeout)); return end
  while not self._stopped do
    if core.kb_loop_run_for(self._h, 100) == 1 then break end
  end
end

--- Run until predicate() is true (true) or timeout s passed (false).
function Loop:run_until(predicate, timeout)
  local deadline = M.now() + (timeout or 10)
  while not predicate() do
    local left = deadline - M.now()
    if left <= 0 then return false end
    core.kb_loop_step(self._h, math.max(1, math.min(100, math.floor(left * 1000))))
  end
  return true
end

function Loop:stop()
  self._stopped = true
  core.kb_loop_stop(self._h)
end

--- Monotonic seconds (for deadlines).
function M.now()
  local f = io.open("/proc/uptime")
  local t = f and tonumber(f:read("n")) or os.time()
  if f then f:close() end
  return t
end

-- ---- nodes ---------------------------------------------------------------------------------------

local Node = class("Node")

local function wrap_node(h) return setmetatable({_h = h}, Node) end

--- A node with id (nil: random) and fields {nodename = "n1", phys_state = "POWER_ON"}.
function M.node(id, fields)
  local n = wrap_node(core.kb_node_new(id or core.kb_uuid_generate()))
  for k, v in pairs(fields or {}) do n:set("/" .. k, v) end
  return n
end

function M.node_from_json(text, source) return wrap_node(core.kb_node_from_json(text, source)) end
function Node:to_json(pretty) return core.kb_node_to_json(self._h, pretty or false) end
function Node:get(url)
  local text = core.kb_node_get_text(self._h, url)
  return from_text(core.kb_last_type(), text)
end
function Node:set(url, value) core.kb_node_set_text(self._h, url, to_text(value)) end
function Node:unset(url) core.kb_node_unset(self._h, url) end
function Node:services() return lines(core.kb_node_service_ids(self._h)) end
function Node:extensions() return lines(core.kb_node_extensions(self._h)) end
function Node:copy() return wrap_node(core.kb_node_copy(self._h)) end
function Node:equals(other) return core.kb_node_equal(self._h, other._h) end
Node.__index = function(n, k)
  if k == "id" then return core.kb_node_id(rawget(n, "_h")) end
  return Node[k]
end
Node.__tostring = function(n) return "kraken.Node(" .. n:to_json() .. ")" end
Node.__eq = function(a, b) return core.kb_node_equal(a._h, b._h) end

-- ---- events, changes, requests ------------------------------------------------------------------------

local function call_value(call, which)
  local t = core.kb_call_value_type(call, which)
  if t == core.KRAKEN_T_NONE then return nil end
  return from_text(t, core.kb_call_value_text(call, which))
end

local KINDS = {[core.KRAKEN_EVENT_STATE_CHANGE] = CHANGE_KINDS,
               [core.KRAKEN_EVENT_STATE_MUTATION] = MUTATION_KINDS,
               [core.KRAKEN_EVENT_SYNC] = SYNC_KINDS, [core.KRAKEN_EVENT_SERVICE] = SERVICE_STATES}

local function event_of(call)
  local t = core.kb_call_event_type(call)
  local kinds = KINDS[t]
  return {type = EVENT_TYPES[t], kind = kinds and kinds[core.kb_call_event_kind(call)],
          seq = core.kb_call_seq(call), node = core.kb_call_node_id(call),
          url = core.kb_call_url(call), old = call_value(call, 0), new = call_value(call, 1),
          service = core.kb_call_service_id(call), mutation = core.kb_call_mutation_id(call),
          message = core.kb_call_message(call)}
end

local function change_of(call)
  return {kind = CHANGE_KINDS[core.kb_call_event_kind(call)], node = core.kb_call_node_id(call),
          url = core.kb_call_url(call), old = call_value(call, 0), new = call_value(call, 1)}
end

-- A request: id, node, service, mutation, mutates {url=, from=, to=}, cfg, dsc (during the call).
local function request_of(call)
  local req = {id = core.kb_call_request_id(call), node = core.kb_call_node_id(call),
               service = core.kb_call_service_id(call),
               mutation = core.kb_call_mutation_id(call), mutates = {}}
  for i = 0, core.kb_call_n_mutates(call) - 1 do
    local url = core.kb_call_mutate(call, i, 0)
    local t = core.kb_url_type(url)
    req.mutates[#req.mutates + 1] = {url = url, from = from_text(t, core.kb_call_mutate(call, i, 1)),
                                     to = from_text(t, core.kb_call_mutate(call, i, 2))}
  end
  -- cfg and dsc: node copies made on first use, during the callback only
  return setmetatable(req, {__index = function(r, k)
    local which = (k == "cfg" and 0) or (k == "dsc" and 1) or nil
    if which == nil then return nil end
    if not rawget(r, "_call") then
      raise(core.KRAKEN_ESTATE, "request %d: cfg/dsc are readable during the callback only "
            .. "(copy them there)", r.id)
    end
    local node = wrap_node(core.kb_call_node(r._call, which))
    rawset(r, k, node)
    return node
  end})
end

-- Run handler(owner, request) with the request's nodes readable during the call only.
local function with_request(handler, owner, call)
  local req = request_of(call)
  req._call = call
  local ok, err = pcall(handler, owner, req)
  req._call = nil
  if not ok then error(err, 0) end
end

-- ---- store -------------------------------------------------------------------------------------------

local Store = class("Store")
local Listener = class("Listener")

function M.store() return setmetatable({_h = core.kb_store_new()}, Store) end
function Store:close() core.kb_store_close(self._h) end
function Store:count() return core.kb_store_count(self._h) end
Store.__len = Store.count
function Store:contains(node) return core.kb_store_contains(self._h, id_of(node)) end
function Store:ids() return lines(core.kb_store_ids(self._h)) end
--- Create a node (a node object, or fields with an optional id); returns its id.
function Store:create(node, fields)
  if getmetatable(node) ~= Node then node = M.node(node, fields) end
  core.kb_store_create(self._h, node._h)
  return node.id
end
function Store:read(node, kind) return wrap_node(core.kb_store_read(self._h, kind_of(kind), id_of(node))) end
function Store:update(node, kind) core.kb_store_update(self._h, kind_of(kind), node._h) end
function Store:get(node, url, kind)
  local text = core.kb_store_get_text(self._h, kind_of(kind), id_of(node), url)
  return from_text(core.kb_last_type(), text)
end
function Store:set(node, url, value, kind)
  core.kb_store_set_text(self._h, kind_of(kind), id_of(node), url, to_text(value))
end
function Store:delete(node) core.kb_store_delete(self._h, id_of(node)) end
function Store:load(path) core.kb_store_load(self._h, path) end
function Store:load_dsc(path) core.kb_store_load_dsc(self._h, path) end
function Store:save(path, kind) core.kb_store_save(self._h, kind_of(kind), path) end
function Store:to_json(kind, pretty) return core.kb_store_to_json(self._h, kind_of(kind), pretty or false) end
function Store:find(nodename) return core.kb_store_find(self._h, nodename) end
--- fn(change) for every change (synchronously; it must not write). Returns a listener.
function Store:listen(fn)
  return setmetatable({_h = core.kb_store_listen(self._h, callback("store listener",
    function(call) fn(change_of(call)) end))}, Listener)
end
function Listener:remove() core.kb_listener_close(self._h) end

-- ---- mutations -------------------------------------------------------------------------------------------

-- A declaration from {id=, mutates={{url, from, to}}, requires={[url]=v}, excludes=,
-- context="CHILD", timeout=seconds, fail_to={url, value}, cost=}.
local function decl_of(m)
  if type(m) ~= "table" or type(m.id) ~= "string" then
    raise(core.KRAKEN_EINVAL, "mutation: expected a table with an id")
  end
  local d = core.kb_decl_new(m.id)
  for _, mu in ipairs(m.mutates or {}) do
    core.kb_decl_mutates(d, mu[1], to_text(mu[2]), to_text(mu[3]))
  end
  for url, v in pairs(m.requires or {}) do core.kb_decl_requires(d, url, to_text(v)) end
  for url, v in pairs(m.excludes or {}) do core.kb_decl_excludes(d, url, to_text(v)) end
  if m.fail_to then core.kb_decl_fail_to(d, m.fail_to[1], to_text(m.fail_to[2])) end
  core.kb_decl_options(d, number_of(CONTEXTS, m.context or "SELF", "mutation context"),
                       ms(m.timeout), m.cost or 1)
  return d
end

local MutationSet = class("MutationSet")
function M.mutation_set() return setmetatable({_h = core.kb_mutset_new()}, MutationSet) end
function MutationSet:add(service_id, m) core.kb_mutset_add(self._h, service_id, decl_of(m)) end
function MutationSet:count() return core.kb_mutset_count(self._h) end
--- The plan as {"service/mutation", ...}; raises NOPATH when none reaches Cfg.
function MutationSet:plan(cfg, dsc)
  dsc = dsc or M.node(cfg.id)
  return lines(core.kb_mutset_plan(self._h, cfg._h, dsc._h))
end
function MutationSet:graph_json(cfg) return core.kb_mutset_graph_json(self._h, cfg and cfg._h) end

-- ---- engine ----------------------------------------------------------------------------------------------

local Engine = class("Engine")
local Service = class("Service")
local Subscription = class("Subscription")

--- An engine: opts = {loop=, store=, self_id=, log=fn(level, subsystem, msg), log_level=,
--- start_frozen=, no_sync_service=, max_failures=, backoff_initial_ms=, ...}.
function M.engine(opts)
  opts = opts or {}
  local loop = opts.loop or M.loop()
  local config = core.kb_engine_config_new()
  for k, v in pairs(opts) do
    if k ~= "loop" and k ~= "store" and k ~= "self_id" and k ~= "log" and k ~= "log_level" then
      local ok = pcall(function() config[k] = v end)
      if not ok then raise(core.KRAKEN_EINVAL, "engine: unknown option '%s'", k) end
    end
  end
  local e = setmetatable({loop = loop, _owned = {}}, Engine)
  e._h = core.kb_engine_new(loop._h, opts.store and opts.store._h, opts.self_id, config)
  e.store = opts.store or setmetatable({_h = core.kb_engine_store(e._h)}, Store)
  if opts.log then e:set_log(opts.log, opts.log_level) end
  return e
end

function Engine:close() core.kb_engine_close(self._h); self._owned = {} end
function Engine:self_id() return core.kb_engine_self_id(self._h) end
function Engine:set_log(fn, max_level)
  local cb = fn and callback("log", function(call)
    fn(LOG_LEVELS[core.kb_call_level(call)], core.kb_call_subsystem(call),
       core.kb_call_message(call))
  end)
  core.kb_engine_set_log(self._h, number_of(LOG_LEVELS, max_level or "NOTICE", "log level"), cb)
end
function Engine:flush() core.kb_engine_flush(self._h) end
function Engine:freeze() core.kb_engine_freeze(self._h, true) end
function Engine:thaw() core.kb_engine_freeze(self._h, false) end
function Engine:frozen() return core.kb_engine_frozen(self._h) end
function Engine:reset_node(node) core.kb_engine_reset_node(self._h, id_of(node)) end
function Engine:status(node)
  local id = id_of(node)
  return {state = core.kb_engine_node_state(self._h, id),
          steps = lines(core.kb_engine_node_plan(self._h, id)),
          current = core.kb_engine_node_step(self._h, id),
          failures = core.kb_engine_node_failures(self._h, id),
          reason = core.kb_engine_node_reason(self._h, id)}
end
function Engine:graph_json(node) return core.kb_engine_graph_json(self._h, node and id_of(node)) end
function Engine:disable_mutation(svc, mid, disabled)
  core.kb_engine_mutation_disable(self._h, svc, mid, disabled ~= false)
end
function Engine:set_mutation_timeout(svc, mid, seconds)
  core.kb_engine_mutation_set_timeout(self._h, svc, mid, ms(seconds))
end

--- Events to fn(event) (or, without fn, queued: sub:events() iterates them).
--- opts = {types = {"DISCOVERY", ...}, url = "glob", queue_limit = n}.
function Engine:subscribe(fn, opts)
  opts = opts or {}
  local sub = setmetatable({queue = {}}, Subscription)
  local queue = sub.queue
  local deliver = fn or function(ev) queue[#queue + 1] = ev end
  sub._h = core.kb_engine_subscribe(self._h, event_mask(opts.types), opts.url,
                                    opts.queue_limit or 0,
                                    callback("event", function(call) deliver(event_of(call)) end))
  self._owned[#self._owned + 1] = sub
  return sub
end
function Subscription:remove() core.kb_subscription_close(self._h) end
function Subscription:dropped() return core.kb_subscription_dropped(self._h) end
function Subscription:events()
  return function() return table.remove(self.queue, 1) end
end

-- Dispatch of start/stop/config/mutate/interrupt to handlers = {on_start=fn(svc, config), ...}.
local function dispatcher(owner_ref, handlers, on_run)
  return function(call)
    local self = owner_ref[1]
    if not self then return end
    local kind = core.kb_call_kind_of(call)
    if kind == core.KB_CALL_START then
      if handlers.on_start then handlers.on_start(self, call_value(call, 2)) else on_run(self) end
    elseif kind == core.KB_CALL_MUTATE and handlers.on_mutate then
      with_request(handlers.on_mutate, self, call)
    elseif kind == core.KB_CALL_INTERRUPT and handlers.on_interrupt then
      with_request(handlers.on_interrupt, self, call)
    elseif kind == core.KB_CALL_STOP and handlers.on_stop then handlers.on_stop(self)
    elseif kind == core.KB_CALL_CONFIG and handlers.on_config then
      handlers.on_config(self, call_value(call, 2))
    elseif kind == core.KB_CALL_EVENT and handlers.on_event then
      handlers.on_event(self, event_of(call))
    elseif kind == core.KB_CALL_DISCONNECT and handlers.on_disconnect then
      handlers.on_disconnect(self, core.kb_call_message(call))
    elseif kind == core.KB_CALL_ERROR and handlers.on_error then
      handlers.on_error(self, {code = core.kb_call_code(call),
                               name = core.kb_err_name(core.kb_call_code(call)),
                               message = core.kb_call_message(call)})
    end
  end
end

-- A raising mutate handler fails its request with the error as reason.
local function fail_on_error(owner_ref)
  return function(call, err)
    if owner_ref[1] and core.kb_call_kind_of(call) == core.KB_CALL_MUTATE then
      owner_ref[1]:fail({node = core.kb_call_node_id(call), id = core.kb_call_request_id(call)},
                        tostring(err):match("[^\n]*"))
    end
  end
end

--- A service of this engine: handlers = {module=, on_start=, on_stop=, on_mutate=fn(svc, req),
--- on_interrupt=, on_config=}.
function Engine:add_service(id, handlers)
  handlers = handlers or {}
  local ref = setmetatable({}, {__mode = "v"})
  local svc = setmetatable({}, Service)
  ref[1] = svc
  svc._h = core.kb_engine_add_service(self._h, id, handlers.module or id,
    callback("service " .. id, dispatcher(ref, handlers, function(s) s:set_state("RUN") end),
             fail_on_error(ref)))
  self._owned[#self._owned + 1] = svc
  return svc
end

function Service:id() return core.kb_service_id(self._h) end
function Service:declare(m) core.kb_service_declare(self._h, decl_of(m)) end
function Service:declare_discoverable(url, name, value)
  core.kb_service_declare_discoverable(self._h, url, name, value and to_text(value))
end
function Service:discover(node, url, value)
  core.kb_service_discover(self._h, id_of(node), url, to_text(value))
end
function Service:report(req, url, value)
  core.kb_service_report(self._h, req.node, req.id, url, to_text(value))
end
function Service:complete(req)
  for _, m in ipairs(req.mutates) do self:report(req, m.url, m.to) end
end
function Service:fail(req, reason) core.kb_service_fail(self._h, req.node, req.id, reason) end
function Service:set_state(state, err)
  core.kb_service_set_state(self._h, number_of(SERVICE_STATES, state, "service state"), err)
end
function Service:remove() core.kb_service_close(self._h) end

-- ---- modules ---------------------------------------------------------------------------------------------

local Module = class("Module")
local ModuleClient = class("ModuleClient")

--- A module description: {name=, schemas=json, config_schema=, discoverables={{url, name,
--- value}}, mutations={decl...}, events={types=, url=}, on_start=, on_stop=, on_config=,
--- on_mutate=, on_interrupt=, on_event=, on_disconnect=, on_error=}.
function M.module(spec)
  local mod = setmetatable({spec = spec, _h = core.kb_moddesc_new(spec.name)}, Module)
  if spec.schemas then core.kb_moddesc_schemas(mod._h, spec.schemas, spec.config_schema) end
  for _, d in ipairs(spec.discoverables or {}) do
    if type(d) == "string" then d = {d} end
    core.kb_moddesc_discoverable(mod._h, d[1], d[2], d[3] and to_text(d[3]))
  end
  for _, m in ipairs(spec.mutations or {}) do core.kb_moddesc_mutation(mod._h, decl_of(m)) end
  if spec.on_event or spec.events then
    local ev = spec.events or {}
    local mask = event_mask(ev.types)
    core.kb_moddesc_events(mod._h, mask ~= 0 and mask or core.KRAKEN_EVENT_MASK_ALL, ev.url)
  end
  return mod
end

local function client(mod, loop, make)
  local ref = setmetatable({}, {__mode = "v"})
  local c = setmetatable({module = mod, loop = loop}, ModuleClient)
  ref[1] = c
  c._h = make(callback("module " .. mod.spec.name,
    dispatcher(ref, mod.spec, function(m) m:set_state("RUN") end), fail_on_error(ref)))
  return c
end

--- Connect to a kraken-daemon's module socket: opts = {loop=, socket=, service_id=, timeout=}.
function Module:connect(opts)
  opts = opts or {}
  local loop = opts.loop or M.loop()
  return client(self, loop, function(cb)
    return core.kb_module_connect(loop._h, self._h, opts.socket, opts.service_id,
                                  ms(opts.timeout or 5), cb)
  end)
end

--- Run in-process as service service_id of an embedded engine.
function Module:run_in(engine, service_id)
  local c = client(self, engine.loop, function(cb)
    return core.kb_module_new(engine._h, self._h, service_id or self.spec.name, cb)
  end)
  engine._owned[#engine._owned + 1] = c
  return c
end

function ModuleClient:close() core.kb_module_close(self._h) end
function ModuleClient:service_id() return core.kb_module_service_id(self._h) end
function ModuleClient:connected() return core.kb_module_connected(self._h) end
function ModuleClient:reconnect() core.kb_module_reconnect(self._h) end
function ModuleClient:run(timeout) self.loop:run(timeout) end
function ModuleClient:discover(node, url, value)
  core.kb_module_discover(self._h, id_of(node), url, to_text(value))
end
function ModuleClient:discover_named(node, url, name)
  core.kb_module_discover_named(self._h, id_of(node), url, name)
end
function ModuleClient:report(req, url, value)
  core.kb_module_report(self._h, req.node, req.id, url, to_text(value))
end
function ModuleClient:complete(req)
  for _, m in ipairs(req.mutates) do self:report(req, m.url, m.to) end
end
function ModuleClient:fail(req, reason) core.kb_module_fail(self._h, req.node, req.id, reason) end
function ModuleClient:set_state(state, err)
  core.kb_module_set_state(self._h, number_of(SERVICE_STATES, state, "service state"), err)
end
function ModuleClient:query(node, kind)
  return wrap_node(core.kb_module_query(self._h, kind_of(kind), id_of(node)))
end
function ModuleClient:update_cfg(node, url, value)
  core.kb_module_update_cfg(self._h, id_of(node), url, to_text(value))
end
function ModuleClient:log(message, level)
  core.kb_module_log(self._h, number_of(LOG_LEVELS, level or "INFO", "log level"), tostring(message))
end

-- ---- misc ------------------------------------------------------------------------------------------------

function M.load_schemas(json, source) core.kb_schema_load_json(json, source) end
function M.load_schema_file(path) core.kb_schema_load_file(path) end
function M.enum_members(name)
  local out = {}
  for _, line in ipairs(lines(core.kb_enum_members(name))) do
    local k, v = line:match("^(.*)=(%-?%d+)$")
    out[k] = math.tointeger(tonumber(v))
  end
  return out
end
function M.canonical_url(url) return core.kb_url_canonical(url) end
function M.uuid() return core.kb_uuid_generate() end
M.version = core.kb_version()
M.ERRORS = {}
for k, v in pairs(core) do
  if type(k) == "string" and k:match("^KRAKEN_E") and math.type(v) == "integer" then
    M.ERRORS[k:sub(9)] = v
  end
end
M._core = core
return M
