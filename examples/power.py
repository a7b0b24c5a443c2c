#!/usr/bin/python3
"""power.py: a kraken power module in Python, run by kraken-daemon as an external module.

    serviceinstances:                                     # kraken-daemon's config (YAML)
      power: {module: pypower, command: /usr/bin/python3, args: [/path/to/power.py]}

It takes nodes from cold to SYNC: discovers their power state, powers them on (and off), boots
them and reports them synced. Power goes through bmc(): replace it with your site's call
(ipmitool, Redfish, ...). The daemon gives the socket and service id in the environment.
"""
import kraken

POWERED = {"/PhysState": "POWER_ON"}
STEPS = [  # id, URL, from, to, required facts
    ("discover", "/PhysState", "PHYS_UNKNOWN", "POWER_OFF", {}),
    ("poweron", "/PhysState", "POWER_OFF", "POWER_ON", {}),
    ("poweroff", "/PhysState", "POWER_ON", "POWER_OFF", {}),
    ("boot", "/RunState", "UNKNOWN", "INIT", POWERED),
    ("sync", "/RunState", "INIT", "SYNC", POWERED),
]

power = kraken.Module("pypower")
power.discoverable("/PhysState", "NODE_OFF", "POWER_OFF")
power.discoverable("/RunState")
for mid, url, old, new, requires in STEPS:
    power.mutation(mid, mutates=[(url, old, new)], requires=requires, context="ALL",
                   timeout=60, fail_to=("/PhysState", "PHYS_HANG") if mid == "poweron" else None)


def bmc(node, action):
    """Ask the node's BMC to power on/off (simulated: always succeeds); returns the state."""
    return {"on": "POWER_ON", "off": "POWER_OFF", "status": "POWER_OFF"}[action]


@power.on_mutate
def mutate(module, req):
    if req.mutation in ("discover", "poweron", "poweroff"):
        action = {"discover": "status", "poweron": "on", "poweroff": "off"}[req.mutation]
        module.report(req, "/PhysState", bmc(req.node, action))
    else:                    # boot and sync: the node's OS would report these; simulated here
        module.complete(req)
    module.log("%s %s" % (req.mutation, req.cfg["/Nodename"] or req.node))


@power.on_disconnect
def disconnected(module, reason):
    module.loop.stop()       # the daemon went away: exit (it restarts us when it comes back)


if __name__ == "__main__":
    with power.connect() as client:
        print("pypower: connected as %s" % client.service_id, flush=True)
        client.run()
