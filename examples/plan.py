#!/usr/bin/python3
"""plan.py: load a state file, change Cfg, print what the engine would do to each node.

    plan.py CFG.json [DSC.json] [--set [NODENAME:]URL=VALUE ...] [-g]

The Python equivalent of examples/plan.c: it declares the reference mutation set of SPEC 4.3
(power, pxe, sync), loads Cfg (and Dsc; otherwise every node is all-unknown, as after a cold
start), applies the --set changes to Cfg (to one node, or to every node without NODENAME:) and
prints each node's cheapest plan. With -g it also prints the mutation graph (vis.js JSON).
"""
import argparse
import json
import sys

import kraken

PHYS, PXE = "/PhysState", "type.googleapis.com/PXE.Client/State"
SIM, POWERED, HANG = {"/Platform": "sim"}, {PHYS: "POWER_ON"}, (PHYS, "PHYS_HANG")


def mutation(mid, mutates, requires, timeout, fail_to=None):
    return kraken.Mutation(mid, mutates, requires, context="CHILD", timeout=timeout,
                           fail_to=fail_to)


SET_S = [
    ("power", mutation("UKtoOFF", [(PHYS, "PHYS_UNKNOWN", "POWER_OFF")], SIM, 10, HANG)),
    ("power", mutation("OFFtoON", [(PHYS, "POWER_OFF", "POWER_ON")], SIM, 10, HANG)),
    ("power", mutation("ONtoOFF", [(PHYS, "POWER_ON", "POWER_OFF")], SIM, 10, HANG)),
    ("power", mutation("HANGtoOFF", [(PHYS, "PHYS_HANG", "POWER_OFF")], SIM, 10, HANG)),
    ("pxe", mutation("NONEtoWAIT", [(PXE, "NONE", "WAIT")], POWERED, 10)),
    ("pxe", mutation("WAITtoINIT", [(PXE, "WAIT", "INIT"), ("/RunState", "UNKNOWN", "INIT")],
                     POWERED, 90)),
    ("sync", mutation("INITtoSYNC", [("/RunState", "INIT", "SYNC")], POWERED, 90, HANG)),
]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cfg")
    ap.add_argument("dsc", nargs="?")
    ap.add_argument("--set", action="append", default=[], metavar="[NODENAME:]URL=VALUE")
    ap.add_argument("-g", action="store_true", help="print the mutation graph")
    args = ap.parse_args(argv)
    mutations = kraken.MutationSet(SET_S)
    with kraken.Store() as store:
        try:
            store.load(args.cfg)
            if args.dsc:
                store.load_dsc(args.dsc)
            for change in args.set:
                target, _, value = change.partition("=")
                name, _, url = target.rpartition(":")
                for nid in [store.find(name)] if name else store.ids():
                    store.set(nid, url, value)
        except kraken.Error as e:
            sys.exit("plan.py: %s (%s)" % (e, e.name))
        print("%d mutations, %d nodes" % (len(mutations), len(store)))
        with open(args.cfg) as f:      # in the file's order, as plan.c prints them
            order = [n["id"] for n in json.load(f)["nodes"]]
        for cfg in (store.cfg(nid) for nid in order):
            name = cfg["/Nodename"] or str(cfg.id)
            try:
                plan = mutations.plan(cfg, store.dsc(cfg.id))
            except kraken.NoPath as e:
                print("%s: no path (%s)" % (name, e))
                continue
            if not plan:
                print("%s: nothing to do" % name)
            else:
                print("%s: %s  (cost %d)" % (name, " -> ".join(plan), plan.cost))
    if args.g:
        print(mutations.graph_json())


if __name__ == "__main__":
    main(sys.argv[1:])
