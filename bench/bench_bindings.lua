-- bench_bindings.lua MODE N: bench/bench_callbacks.c's work from Lua (see bench_bindings.py).
local kraken = require "kraken"
local mode, n = arg[1], math.tointeger(tonumber(arg[2]))
local mutations = 0
local mod = kraken.module {
  name = "luapower",
  discoverables = {{"/PhysState"}},
  mutations = mode == "mutate" and {
    {id = "discover", mutates = {{"/PhysState", "PHYS_UNKNOWN", "POWER_OFF"}}, context = "ALL"},
    {id = "poweron", mutates = {{"/PhysState", "POWER_OFF", "POWER_ON"}}, context = "ALL"}} or {},
  on_mutate = function(m, req) mutations = mutations + 1; m:complete(req) end,
}
local e = kraken.engine{no_sync_service = true}
local client = mod:run_in(e, "power")
e.loop:step(0)
local ids = {}
for i = 1, (mode == "mutate" and n or 1000) do
  ids[i] = e.store:create(nil, mode == "mutate" and {phys_state = "POWER_ON"} or nil)
end
local t0 = kraken.now()
local ops = n
if mode == "mutate" then
  ops = 2 * n
  while mutations < ops do e.loop:step(nil) end
else
  local values, nodes = {"POWER_OFF", "POWER_ON"}, #ids
  for i = 0, n - 1 do client:discover(ids[i % nodes + 1], "/PhysState", values[i % 2 + 1]) end
  e.loop:step(0)
end
local dt = kraken.now() - t0
print(string.format("%s %d %.3f %.2f", mode, ops, dt, dt / ops * 1e6))
