"""Modules (SPEC 7) in Python: a Module describes one, a ModuleClient is a running instance,
connected to a kraken-daemon's module socket (Module.connect) or in-process (Module.run_in)."""

import weakref
from typing import Any, Callable, Optional, Union

from . import core
from .engine import (Engine, Event, Loop, Mutation, Node, NodeId, Request, SERVICE_STATES,
                     _callback, _event_mask, _kind, _ms, _mutation, _number, _value, LOG_LEVELS)
from .values import id_text, to_text

class Module:
    """What a module is: its name, schemas, discoverable URLs, mutations and handlers.

    power = kraken.Module("mypower")
    power.mutation("poweron", mutates=[("/PhysState", "POWER_OFF", "POWER_ON")], context="CHILD")

    @power.on_mutate
    def mutate(m, req):
        m.complete(req)
    """

    def __init__(self, name: str, *, schemas: Union[None, str, dict] = None,
                 config_schema: Optional[str] = None):
        self._h = core.kb_moddesc_new(name)
        self.name = name
        self._handlers = {}
        self._events_set = False
        if schemas is not None:
            import json
            core.kb_moddesc_schemas(self._h, schemas if isinstance(schemas, str)
                                    else json.dumps(schemas), config_schema)

    def discoverable(self, url: str, name: Optional[str] = None, value: Any = None) -> None:
        """A URL this module discovers, optionally with a named value ("NODE_OFF")."""
        core.kb_moddesc_discoverable(self._h, url, name, None if value is None
                                     else to_text(value))

    def mutation(self, mutation: Union[Mutation, str], **kw) -> None:
        """Declare a mutation (a Mutation, or its fields as keywords)."""
        core.kb_moddesc_mutation(self._h, _mutation(mutation, **kw)._decl())

    def events(self, types=None, url: Optional[str] = None) -> None:
        """Which events on_event receives (type names, URL glob)."""
        core.kb_moddesc_events(self._h, _event_mask(types) or core.KRAKEN_EVENT_MASK_ALL, url)
        self._events_set = True

    def _on(self, what: str, fn: Callable) -> Callable:
        self._handlers[what] = fn
        return fn

    def on_start(self, fn):
        """fn(module, config): config is the service's Cfg config (dict) or None. Without it,
        the module says RUN at once."""
        return self._on("start", fn)

    def on_stop(self, fn):
        return self._on("stop", fn)

    def on_config(self, fn):
        return self._on("config", fn)

    def on_mutate(self, fn):
        """fn(module, request): answer with module.report/complete/fail (raising fails it)."""
        return self._on("mutate", fn)

    def on_interrupt(self, fn):
        return self._on("interrupt", fn)

    def on_event(self, fn):
        """fn(module, event) for the events chosen with events() (all when not called)."""
        if not self._events_set:
            core.kb_moddesc_events(self._h, core.KRAKEN_EVENT_MASK_ALL, None)
        return self._on("event", fn)

    def on_disconnect(self, fn):
        """fn(module, reason): the connection to the daemon closed or broke."""
        return self._on("disconnect", fn)

    def on_error(self, fn):
        """fn(module, error): an asynchronous refusal (kraken.Error) of a discovery/report."""
        return self._on("error", fn)

    def connect(self, loop: Optional[Loop] = None, *, socket: Optional[str] = None,
                service_id: Optional[str] = None, timeout: float = 5.0) -> "ModuleClient":
        """Connect to a kraken-daemon's module socket (default $KRAKEN_MODULE_SOCKET) and
        register as service ``service_id`` (default $KRAKEN_SERVICE_ID, else the name)."""
        return ModuleClient(self, loop if loop is not None else Loop(), None, socket,
                            service_id, timeout)

    def run_in(self, engine: Engine, service_id: Optional[str] = None) -> "ModuleClient":
        """Run as a service of an embedded engine (same handlers, no socket)."""
        client = ModuleClient(self, engine.loop, engine, None, service_id or self.name, 0)
        engine._owned.append(client)
        return client


class ModuleClient:
    """A running module instance: the calls a module makes. Close it (or use ``with``) to
    disconnect; calls after that raise kraken.StateError."""

    def __init__(self, module: Module, loop: Loop, engine: Optional[Engine],
                 socket: Optional[str], service_id: Optional[str], timeout: float):
        self.module = module
        self.loop = loop
        handlers = dict(module._handlers)
        me = weakref.ref(self)

        def dispatch(call):
            client = me()
            if client is None:
                return
            kind = core.kb_call_kind_of(call)
            if kind == core.KB_CALL_START:
                fn = handlers.get("start")
                if fn is None:
                    client.set_state("RUN")
                else:
                    fn(client, _value(call, 2))
            elif kind in (core.KB_CALL_MUTATE, core.KB_CALL_INTERRUPT):
                fn = handlers.get("mutate" if kind == core.KB_CALL_MUTATE else "interrupt")
                if fn is not None:
                    req = Request(call)
                    try:
                        fn(client, req)
                    finally:
                        req._seal()
            elif kind == core.KB_CALL_STOP and "stop" in handlers:
                handlers["stop"](client)
            elif kind == core.KB_CALL_CONFIG and "config" in handlers:
                handlers["config"](client, _value(call, 2))
            elif kind == core.KB_CALL_EVENT and "event" in handlers:
                handlers["event"](client, Event._from_call(call))
            elif kind == core.KB_CALL_DISCONNECT and "disconnect" in handlers:
                handlers["disconnect"](client, core.kb_call_message(call))
            elif kind == core.KB_CALL_ERROR and "error" in handlers:
                from .errors import error_for
                handlers["error"](client, error_for(core.kb_call_code(call),
                                                    core.kb_call_message(call)))

        def failed(call, exc):
            client = me()
            if client is not None and core.kb_call_kind_of(call) == core.KB_CALL_MUTATE:
                client.fail(Request(call), "%s: %s" % (type(exc).__name__, exc))

        cb = _callback("module " + module.name, dispatch, failed)
        if engine is not None:
            self._h = core.kb_module_new(engine._h, module._h, service_id, cb)
        else:
            self._h = core.kb_module_connect(loop._h, module._h, socket, service_id,
                                             _ms(timeout), cb)

    def close(self) -> None:
        """Disconnect (or leave the engine). Idempotent."""
        core.kb_module_close(self._h)

    def __enter__(self) -> "ModuleClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def service_id(self) -> str:
        return core.kb_module_service_id(self._h)

    @property
    def connected(self) -> bool:
        return core.kb_module_connected(self._h)

    def reconnect(self) -> None:
        core.kb_module_reconnect(self._h)

    def run(self, timeout: Optional[float] = None) -> None:
        """Run the loop (until Ctrl-C, loop.stop() or ``timeout`` s)."""
        self.loop.run(timeout)

    def discover(self, node: NodeId, url: str, value: Any) -> None:
        """Report a fact about a node (sent without waiting; refusals go to on_error)."""
        core.kb_module_discover(self._h, id_text(node), url, to_text(value))

    def discover_named(self, node: NodeId, url: str, name: str) -> None:
        core.kb_module_discover_named(self._h, id_text(node), url, name)

    def report(self, request: Request, url: str, value: Any) -> None:
        """Answer a request with a discovery of ``url``."""
        core.kb_module_report(self._h, str(request.node), request.id, url, to_text(value))

    def complete(self, request: Request) -> None:
        """Report every URL of the request at its goal value."""
        for m in request.mutates:
            self.report(request, m.url, m.to)

    def fail(self, request: Request, reason: str) -> None:
        core.kb_module_fail(self._h, str(request.node), request.id, reason)

    def set_state(self, state: str, error: Optional[str] = None) -> None:
        core.kb_module_set_state(self._h, _number(SERVICE_STATES, state, "service state"), error)

    def query(self, node: NodeId, kind: str = "cfg") -> Node:
        """A copy of a node's Cfg or Dsc (waits for the daemon's answer)."""
        return Node._wrap(core.kb_module_query(self._h, _kind(kind), id_text(node)))

    def update_cfg(self, node: NodeId, url: str, value: Any) -> None:
        core.kb_module_update_cfg(self._h, id_text(node), url, to_text(value))

    def log(self, message: str, level: Union[int, str] = "INFO") -> None:
        core.kb_module_log(self._h, _number(LOG_LEVELS, level, "log level"), str(message))

