#!/usr/bin/lua5.4
-- power.lua: a kraken power module in Lua, run by kraken-daemon as an external module.
--
--   serviceinstances:                                   # kraken-daemon's config (YAML)
--     power: {module: luapower, command: /usr/bin/lua5.4, args: [/path/to/power.lua]}
--
-- It takes nodes from cold to SYNC: discovers their power state, powers them on (and off),
-- boots them and reports them synced. Power goes through bmc(): replace it with your site's
-- call (ipmitool, Redfish, ...). The daemon gives the socket and service id in the environment.
local kraken = require "kraken"

local POWERED = {["/PhysState"] = "POWER_ON"}
local STEPS = { -- id, URL, from, to, required facts
  {"discover", "/PhysState", "PHYS_UNKNOWN", "POWER_OFF", {}},
  {"poweron", "/PhysState", "POWER_OFF", "POWER_ON", {}},
  {"poweroff", "/PhysState", "POWER_ON", "POWER_OFF", {}},
  {"boot", "/RunState", "UNKNOWN", "INIT", POWERED},
  {"sync", "/RunState", "INIT", "SYNC", POWERED},
}
local ACTIONS = {discover = "status", poweron = "on", poweroff = "off"}

-- Ask the node's BMC to power on/off (simulated: always succeeds); returns the state.
local function bmc(node, action)
  return ({on = "POWER_ON", off = "POWER_OFF", status = "POWER_OFF"})[action]
end

local mutations = {}
for _, s in ipairs(STEPS) do
  mutations[#mutations + 1] = {id = s[1], mutates = {{s[2], s[3], s[4]}}, requires = s[5],
    context = "ALL", timeout = 60,
    fail_to = s[1] == "poweron" and {"/PhysState", "PHYS_HANG"} or nil}
end

local power = kraken.module {
  name = "luapower",
  discoverables = {{"/PhysState", "NODE_OFF", "POWER_OFF"}, {"/RunState"}},
  mutations = mutations,
  on_mutate = function(module, req)
    local action = ACTIONS[req.mutation]
    if action then
      module:report(req, "/PhysState", bmc(req.node, action))
    else -- boot and sync: the node's OS would report these; simulated here
      module:complete(req)
    end
    local name = req.cfg:get("/Nodename")
    module:log(req.mutation .. " " .. (name ~= "" and name or req.node))
  end,
  on_disconnect = function(module) module.loop:stop() end, -- the daemon went away: exit
}

local client = power:connect()
print("luapower: connected as " .. client:service_id())
io.stdout:flush()
client:run()
client:close()
