"""Loop, Node, Store, Engine, Service, Subscription, Mutation, MutationSet: the embedded engine."""

import json
import logging
import time
import uuid
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from . import core
from .errors import CallbackWarning, StateError
from .values import from_text, id_text, lines, to_text, url_type

NodeId = Union[uuid.UUID, str, "Node"]
log = logging.getLogger("kraken")

# ---- callbacks ------------------------------------------------------------------------------------

_error_handler: Optional[Callable[[str, BaseException], None]] = None
_pending: List[BaseException] = []      # KeyboardInterrupt/SystemExit raised inside a callback
_running: List["Loop"] = []             # loops inside run()/step(): stopped by such an exception


def set_callback_error_handler(handler: Optional[Callable[[str, BaseException], None]]) -> None:
    """Call ``handler(where, exception)`` when a callback raises (default: a CallbackWarning
    and an error on the "kraken" logger). The engine goes on either way."""
    global _error_handler
    _error_handler = handler


def _report(where: str, exc: BaseException) -> None:
    if _error_handler is not None:
        try:
            _error_handler(where, exc)
            return
        except Exception as again:  # a broken handler must not break the loop either
            exc = again
    log.error("exception in %s callback: %r", where, exc, exc_info=exc)
    warnings.warn(CallbackWarning("exception in %s callback: %r" % (where, exc)), stacklevel=2)


def _callback(where: str, handler: Callable[[Any], None], on_error=None):
    """A C callback object running ``handler(call)``; exceptions never reach C."""
    def run(call):
        try:
            handler(call)
        except Exception as exc:
            _report(where, exc)
            if on_error is not None:
                try:
                    on_error(call, exc)
                except Exception as again:
                    _report(where, again)
        except BaseException as exc:     # Ctrl-C, sys.exit(): end the loop, raise from run()
            _pending.append(exc)
            for loop in _running:
                core.kb_loop_stop(loop._h)
    return core.kb_py_callback_new(run)


def _raise_pending() -> None:
    if _pending:
        exc = _pending.pop(0)
        _pending.clear()
        raise exc


# ---- names of enum values ----------------------------------------------------------------------------

def _names(prefix: str) -> Dict[int, str]:
    return {getattr(core, n): n[len(prefix):] for n in dir(core) if n.startswith(prefix)}


EVENT_TYPES = _names("KRAKEN_EVENT_")
EVENT_TYPES.pop(core.KRAKEN_EVENT_MASK_ALL, None)
CHANGE_KINDS = _names("KRAKEN_CHANGE_")
MUTATION_KINDS = _names("KRAKEN_MUTATION_")
SYNC_KINDS = _names("KRAKEN_SYNC_")
SERVICE_STATES = _names("KRAKEN_SERVICE_")
LOG_LEVELS = _names("KRAKEN_LOG_")
CONTEXTS = _names("KRAKEN_CONTEXT_")


def _number(names: Dict[int, str], value, what: str) -> int:
    if isinstance(value, int):
        if value not in names:
            raise ValueError("%s: unknown value %d" % (what, value))
        return value
    for number, name in names.items():
        if name == str(value).upper():
            return number
    raise ValueError("%s: unknown name %r (expected one of %s)"
                     % (what, value, ", ".join(sorted(names.values()))))


def _event_mask(types) -> int:
    if types is None:
        return 0
    if isinstance(types, (str, int)):
        types = [types]
    mask = 0
    for t in types:
        mask |= 1 << _number(EVENT_TYPES, t, "event type")
    return mask


def _kind(kind) -> int:
    k = str(kind).lower()
    if k in ("cfg", "0"):
        return core.KRAKEN_CFG
    if k in ("dsc", "1"):
        return core.KRAKEN_DSC
    raise ValueError("state kind %r: expected 'cfg' or 'dsc'" % (kind,))


def _ms(seconds: Optional[float]) -> int:
    return 0 if not seconds else max(1, int(round(seconds * 1000)))


# ---- loop ----------------------------------------------------------------------------------------------

class Loop:
    """A libevent loop. Blocking runs release the GIL; callbacks run with it held."""

    def __init__(self):
        self._h = core.kb_loop_new()
        self._stopped = False

    def step(self, timeout: Optional[float] = 0) -> bool:
        """Run what is ready (waiting up to ``timeout`` s for something; None: until it
        happens). True when events ran. ``step(0)`` never waits (asyncio, other loops)."""
        ms = -1 if timeout is None else int(timeout * 1000)
        _running.append(self)
        try:
            ran = core.kb_loop_step(self._h, ms)
        finally:
            _running.remove(self)
        _raise_pending()
        return bool(ran)

    def run(self, timeout: Optional[float] = None) -> None:
        """Run until stop() (from a callback), ``timeout`` s, or Ctrl-C (KeyboardInterrupt)."""
        self._stopped = False
        deadline = None if timeout is None else time.monotonic() + timeout
        _running.append(self)
        try:
            while not self._stopped:
                slice_ms = 100
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    slice_ms = max(1, min(slice_ms, int(left * 1000)))
                stopped = core.kb_loop_run_for(self._h, slice_ms)  # GIL released inside
                _raise_pending()
                if stopped:
                    break
        finally:
            _running.remove(self)

    def run_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Run until ``predicate()`` is true (True) or ``timeout`` s passed (False)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.step(min(left, 0.1))
        return True

    def stop(self) -> None:
        """Make run() return after the current callback."""
        self._stopped = True
        core.kb_loop_stop(self._h)


# ---- nodes --------------------------------------------------------------------------------------------

class Node:
    """A node value (Cfg or Dsc): fields by URL, values as native Python types. Without an
    id, a random one is made. Keyword fields are URLs without the '/' (snake_case works).

    >>> n = Node("7e57c0de-0000-4000-8000-000000000001", nodename="n1", phys_state="POWER_ON")
    >>> n["/PhysState"]
    'POWER_ON'
    """

    __slots__ = ("_h",)

    def __init__(self, id: Optional[NodeId] = None, **fields: Any):
        self._h = core.kb_node_new(id_text(id if id is not None else uuid.uuid4()))
        for name, value in fields.items():
            self.set("/" + name, value)

    @classmethod
    def _wrap(cls, handle) -> "Node":
        node = cls.__new__(cls)
        node._h = handle
        return node

    @classmethod
    def from_json(cls, text: Union[str, dict], source: str = "json") -> "Node":
        """A node from its JSON form (a str, or a dict as json.loads gives)."""
        if not isinstance(text, str):
            text = json.dumps(text)
        return cls._wrap(core.kb_node_from_json(text, source))

    def to_json(self, pretty: bool = False) -> str:
        return core.kb_node_to_json(self._h, pretty)

    def to_dict(self) -> dict:
        return json.loads(self.to_json())

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(core.kb_node_id(self._h))

    def get(self, url: str, default: Any = None) -> Any:
        """The value at ``url`` (the zero value of its type when unset); ``default`` when the
        URL names nothing on this node (a missing map key, extension or service)."""
        try:
            text = core.kb_node_get_text(self._h, url)
        except LookupError:
            return default
        return from_text(core.kb_last_type(), text)

    def set(self, url: str, value: Any) -> None:
        core.kb_node_set_text(self._h, url, to_text(value))

    def unset(self, url: str) -> None:
        core.kb_node_unset(self._h, url)

    __getitem__ = get
    __setitem__ = set
    __delitem__ = unset

    @property
    def services(self) -> List[str]:
        """Ids of the node's service instances."""
        return lines(core.kb_node_service_ids(self._h))

    @property
    def extensions(self) -> List[str]:
        """Type URLs of the node's extensions."""
        return lines(core.kb_node_extensions(self._h))

    def copy(self) -> "Node":
        return Node._wrap(core.kb_node_copy(self._h))

    def __eq__(self, other) -> bool:
        return isinstance(other, Node) and core.kb_node_equal(self._h, other._h)

    __hash__ = None

    def __repr__(self) -> str:
        return "Node(%s)" % self.to_json()


# ---- events, changes, requests ---------------------------------------------------------------------------

def _value(call, which: int):
    ktype = core.kb_call_value_type(call, which)
    if ktype == core.KRAKEN_T_NONE:
        return None
    return from_text(ktype, core.kb_call_value_text(call, which))


def _uuid_or_none(text):
    return uuid.UUID(text) if text else None


@dataclass(frozen=True)
class Event:
    """A bus event (SPEC 5). ``type`` and ``kind`` are names ("DISCOVERY", "MUTATE")."""
    type: str
    kind: Optional[str]
    seq: int
    node: Optional[uuid.UUID]
    url: Optional[str] = None
    old: Any = None
    new: Any = None
    service: Optional[str] = None
    mutation: Optional[str] = None
    message: Optional[str] = None

    @classmethod
    def _from_call(cls, call) -> "Event":
        etype = core.kb_call_event_type(call)
        kind = core.kb_call_event_kind(call)
        kinds = {core.KRAKEN_EVENT_STATE_CHANGE: CHANGE_KINDS,
                 core.KRAKEN_EVENT_STATE_MUTATION: MUTATION_KINDS,
                 core.KRAKEN_EVENT_SYNC: SYNC_KINDS,
                 core.KRAKEN_EVENT_SERVICE: SERVICE_STATES}.get(etype)
        return cls(type=EVENT_TYPES.get(etype, str(etype)),
                   kind=kinds.get(kind, str(kind)) if kinds else None,
                   seq=core.kb_call_seq(call), node=_uuid_or_none(core.kb_call_node_id(call)),
                   url=core.kb_call_url(call), old=_value(call, 0), new=_value(call, 1),
                   service=core.kb_call_service_id(call),
                   mutation=core.kb_call_mutation_id(call), message=core.kb_call_message(call))


@dataclass(frozen=True)
class Change:
    """A store change: kind ("CREATE", "UPDATE", "DELETE", "CFG_UPDATE"), node, url, old, new."""
    kind: str
    node: uuid.UUID
    url: Optional[str]
    old: Any
    new: Any

    @classmethod
    def _from_call(cls, call) -> "Change":
        return cls(kind=CHANGE_KINDS.get(core.kb_call_event_kind(call), "?"),
                   node=uuid.UUID(core.kb_call_node_id(call)), url=core.kb_call_url(call),
                   old=_value(call, 0), new=_value(call, 1))


@dataclass(frozen=True)
class Mutate:
    """One (url, from, to) of a mutation; values native."""
    url: str
    from_: Any
    to: Any


class Request:
    """A mutation step dispatched to a service or module (or its interrupt).

    ``id`` is the request id to answer with; ``cfg``/``dsc`` are copies of the node, readable
    during the callback (copied on first use); keep them with ``.copy()`` if needed later.
    """

    __slots__ = ("id", "node", "service", "mutation", "mutates", "_call", "_cfg", "_dsc")

    def __init__(self, call):
        self.id: int = core.kb_call_request_id(call)
        self.node: uuid.UUID = uuid.UUID(core.kb_call_node_id(call))
        self.service: str = core.kb_call_service_id(call)
        self.mutation: str = core.kb_call_mutation_id(call)
        self.mutates: List[Mutate] = []
        for i in range(core.kb_call_n_mutates(call)):
            url = core.kb_call_mutate(call, i, 0)
            ktype = url_type(url)
            self.mutates.append(Mutate(url, from_text(ktype, core.kb_call_mutate(call, i, 1)),
                                       from_text(ktype, core.kb_call_mutate(call, i, 2))))
        self._call = call
        self._cfg = self._dsc = None

    def _node(self, which: int) -> Node:
        if self._call is None:
            raise StateError("request %d: cfg/dsc are readable during the callback only "
                             "(copy them there)" % self.id, core.KRAKEN_ESTATE)
        return Node._wrap(core.kb_call_node(self._call, which))

    @property
    def cfg(self) -> Node:
        if self._cfg is None:
            self._cfg = self._node(0)
        return self._cfg

    @property
    def dsc(self) -> Node:
        if self._dsc is None:
            self._dsc = self._node(1)
        return self._dsc

    @property
    def goal(self) -> Dict[str, Any]:
        """{url: value to reach} for each mutated URL."""
        return {m.url: m.to for m in self.mutates}

    def _seal(self) -> None:
        self._call = None

    def __repr__(self) -> str:
        return "Request(id=%d, node=%s, %s/%s)" % (self.id, self.node, self.service,
                                                    self.mutation)


# ---- store ------------------------------------------------------------------------------------------------

class Listener:
    """A store listener; remove() (or closing the store) ends it."""

    def __init__(self, handle):
        self._h = handle

    def remove(self) -> None:
        core.kb_listener_close(self._h)

    close = remove


class Store:
    """Cfg and Dsc node sets (SPEC 2). ``kind`` arguments are "cfg" or "dsc"."""

    def __init__(self, _handle=None):
        self._h = _handle if _handle is not None else core.kb_store_new()

    def close(self) -> None:
        """Free the store (engines on it and listeners are detached). Idempotent."""
        core.kb_store_close(self._h)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return core.kb_store_count(self._h)

    def __contains__(self, node: NodeId) -> bool:
        return core.kb_store_contains(self._h, id_text(node))

    def ids(self) -> List[uuid.UUID]:
        """Every node id, sorted."""
        return [uuid.UUID(t) for t in lines(core.kb_store_ids(self._h))]

    def __iter__(self) -> Iterator[uuid.UUID]:
        return iter(self.ids())

    def nodes(self, kind: str = "cfg") -> Iterator[Node]:
        """Copies of every node of one kind."""
        for nid in self.ids():
            yield self.read(nid, kind)

    def create(self, node: Union[Node, NodeId, None] = None, **fields: Any) -> uuid.UUID:
        """Create a node from a Node, or from an id and fields; returns its id."""
        if not isinstance(node, Node):
            node = Node(node if node is not None else uuid.uuid4(), **fields)
        core.kb_store_create(self._h, node._h)
        return node.id

    def read(self, node: NodeId, kind: str = "cfg") -> Node:
        return Node._wrap(core.kb_store_read(self._h, _kind(kind), id_text(node)))

    def cfg(self, node: NodeId) -> Node:
        return self.read(node, "cfg")

    def dsc(self, node: NodeId) -> Node:
        return self.read(node, "dsc")

    def update(self, node: Node, kind: str = "cfg") -> None:
        core.kb_store_update(self._h, _kind(kind), node._h)

    def get(self, node: NodeId, url: str, kind: str = "cfg") -> Any:
        text = core.kb_store_get_text(self._h, _kind(kind), id_text(node), url)
        return from_text(core.kb_last_type(), text)

    def set(self, node: NodeId, url: str, value: Any, kind: str = "cfg") -> None:
        core.kb_store_set_text(self._h, _kind(kind), id_text(node), url, to_text(value))

    def delete(self, node: NodeId) -> None:
        core.kb_store_delete(self._h, id_text(node))

    def load(self, path: str) -> None:
        """Create the nodes of a JSON node-list file (Cfg); all or nothing."""
        core.kb_store_load(self._h, str(path))

    def load_dsc(self, path: str) -> None:
        """Replace the Dsc of the nodes of a JSON node-list file; all or nothing."""
        core.kb_store_load_dsc(self._h, str(path))

    def save(self, path: str, kind: str = "cfg") -> None:
        core.kb_store_save(self._h, _kind(kind), str(path))

    def to_json(self, kind: str = "cfg", pretty: bool = False) -> str:
        return core.kb_store_to_json(self._h, _kind(kind), pretty)

    def find(self, nodename: str) -> uuid.UUID:
        """The id of the node whose Cfg nodename is ``nodename`` (NotFound / AlreadyExists)."""
        return uuid.UUID(core.kb_store_find(self._h, nodename))

    def listen(self, callback: Callable[[Change], None]) -> Listener:
        """Call ``callback(Change)`` for every change, synchronously (it must not write)."""
        return Listener(core.kb_store_listen(
            self._h, _callback("store listener", lambda c: callback(Change._from_call(c)))))


# ---- mutations ----------------------------------------------------------------------------------------------

@dataclass
class Mutation:
    """A mutation declaration (SPEC 4.1). Values may be native (enum names, ints, UUIDs).

    Mutation("poweron", mutates=[("/PhysState", "POWER_OFF", "POWER_ON")],
             requires={"/Platform": "sim"}, context="CHILD", timeout=30, fail_to=("/PhysState",
             "PHYS_HANG"))
    """
    id: str
    mutates: List[Tuple[str, Any, Any]]
    requires: Dict[str, Any] = field(default_factory=dict)   # or [(url, value), ...]
    excludes: Dict[str, Any] = field(default_factory=dict)
    context: str = "SELF"
    timeout: Optional[float] = None      # seconds; None: no timeout
    fail_to: Optional[Tuple[str, Any]] = None
    cost: int = 1

    def _decl(self):
        requires = _facts(self.id, "requires", self.requires)
        excludes = _facts(self.id, "excludes", self.excludes)
        d = core.kb_decl_new(self.id)
        for url, frm, to in self.mutates:
            core.kb_decl_mutates(d, url, to_text(frm), to_text(to))
        for url, value in requires:
            core.kb_decl_requires(d, url, to_text(value))
        for url, value in excludes:
            core.kb_decl_excludes(d, url, to_text(value))
        if self.fail_to:
            core.kb_decl_fail_to(d, self.fail_to[0], to_text(self.fail_to[1]))
        core.kb_decl_options(d, _number(CONTEXTS, self.context, "mutation context"),
                             _ms(self.timeout), self.cost)
        return d


def _facts(mutation_id: str, what: str, facts: Any) -> List[Tuple[str, Any]]:
    """``requires``/``excludes`` as (url, value) pairs: a dict, or pairs as ``mutates`` is written."""
    if isinstance(facts, dict):
        return list(facts.items())
    try:
        pairs = [tuple(f) for f in facts]
    except TypeError:
        pairs = None
    if pairs is None or any(len(p) != 2 or not isinstance(p[0], str) for p in pairs):
        raise TypeError("mutation %r: %s must be a dict {url: value} or a list of (url, value) "
                        "pairs, not %r" % (mutation_id, what, facts))
    return pairs


def _mutation(m: Union[Mutation, str], **kw) -> Mutation:
    return m if isinstance(m, Mutation) else Mutation(m, **kw)


class Plan(list):
    """Steps "service/mutation" of a plan, and its total ``cost``."""
    cost: int = 0


class MutationSet:
    """A stand-alone mutation set: plans without an engine (a pure function of Cfg, Dsc)."""

    def __init__(self, mutations: Iterable[Tuple[str, Mutation]] = ()):
        self._h = core.kb_mutset_new()
        for service, m in mutations:
            self.add(service, m)

    def add(self, service_id: str, mutation: Union[Mutation, str], **kw) -> None:
        core.kb_mutset_add(self._h, service_id, _mutation(mutation, **kw)._decl())

    def __len__(self) -> int:
        return core.kb_mutset_count(self._h)

    def plan(self, cfg: Node, dsc: Optional[Node] = None) -> "Plan":
        """The cheapest plan: a list of "service/mutation" steps with a ``cost`` (NoPath when
        no sequence reaches Cfg). Without ``dsc`` the node is all-unknown (a cold start)."""
        if dsc is None:
            dsc = Node(cfg.id)
        plan = Plan(lines(core.kb_mutset_plan(self._h, cfg._h, dsc._h)))
        plan.cost = core.kb_mutset_plan_cost(self._h, cfg._h, dsc._h)
        return plan

    def graph_json(self, cfg: Optional[Node] = None) -> str:
        """The mutation graph in vis.js form, as JSON text (static requirements such as
        /Platform are read from ``cfg``; without it they count as met)."""
        return core.kb_mutset_graph_json(self._h, cfg._h if cfg else None)

    def graph(self, cfg: Optional[Node] = None) -> dict:
        return json.loads(self.graph_json(cfg))


# ---- engine ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanStatus:
    """Where a node's plan is: state ("CONVERGED", "RUNNING", ...), steps, current, ..."""
    state: str
    steps: List[str]
    current: int
    failures: int
    reason: Optional[str]


class Subscription:
    """Events of an engine's bus. With a callback, each event is passed to it from the loop;
    without one, events queue here: iterate (``for ev in sub``) to take them."""

    def __init__(self, engine: "Engine", callback, types, url, queue_limit):
        self._queue: List[Event] = []
        queue = self._queue
        deliver = callback if callback is not None else queue.append
        self._h = core.kb_engine_subscribe(
            engine._h, _event_mask(types), url, queue_limit,
            _callback("event", lambda c: deliver(Event._from_call(c))))

    def __iter__(self) -> Iterator[Event]:
        while self._queue:
            yield self._queue.pop(0)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def dropped(self) -> int:
        """Events dropped because the subscriber's queue was full."""
        return core.kb_subscription_dropped(self._h)

    def remove(self) -> None:
        """Unsubscribe; the callback is released. Idempotent."""
        core.kb_subscription_close(self._h)

    close = remove

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class Service:
    """A service instance on the engine's self node, driven by Python callbacks.

    on_mutate(service, request) answers with service.report()/complete()/fail(); a callback that
    raises fails the request with the exception as reason. Without on_start the service is RUN
    as soon as it is started.
    """

    def __init__(self, engine: "Engine", service_id: str, module: Optional[str], on_start,
                 on_stop, on_mutate, on_interrupt, on_config):
        me = weakref.ref(self)
        handlers = {core.KB_CALL_START: on_start, core.KB_CALL_STOP: on_stop,
                    core.KB_CALL_MUTATE: on_mutate, core.KB_CALL_INTERRUPT: on_interrupt,
                    core.KB_CALL_CONFIG: on_config}

        def dispatch(call):
            svc = me()
            if svc is None:
                return
            kind = core.kb_call_kind_of(call)
            fn = handlers.get(kind)
            if kind == core.KB_CALL_START and fn is None:
                svc.set_state("RUN")
            elif kind in (core.KB_CALL_MUTATE, core.KB_CALL_INTERRUPT) and fn is not None:
                req = Request(call)
                try:
                    fn(svc, req)
                finally:
                    req._seal()
            elif kind == core.KB_CALL_CONFIG and fn is not None:
                fn(svc, _value(call, 2))
            elif fn is not None:
                fn(svc)

        def failed(call, exc):
            svc = me()
            if svc is not None and core.kb_call_kind_of(call) == core.KB_CALL_MUTATE:
                svc.fail(Request(call), "%s: %s" % (type(exc).__name__, exc))

        self._h = core.kb_engine_add_service(engine._h, service_id, module or service_id,
                                             _callback("service " + service_id, dispatch, failed))

    @property
    def id(self) -> str:
        return core.kb_service_id(self._h)

    def declare(self, mutation: Union[Mutation, str], **kw) -> None:
        core.kb_service_declare(self._h, _mutation(mutation, **kw)._decl())

    def declare_discoverable(self, url: str, name: Optional[str] = None,
                             value: Any = None) -> None:
        core.kb_service_declare_discoverable(self._h, url, name,
                                             None if value is None else to_text(value))

    def discover(self, node: NodeId, url: str, value: Any) -> None:
        core.kb_service_discover(self._h, id_text(node), url, to_text(value))

    def report(self, request: Request, url: str, value: Any) -> None:
        core.kb_service_report(self._h, str(request.node), request.id, url, to_text(value))

    def complete(self, request: Request) -> None:
        """Report every URL of the request at its goal value."""
        for m in request.mutates:
            self.report(request, m.url, m.to)

    def fail(self, request: Request, reason: str) -> None:
        core.kb_service_fail(self._h, str(request.node), request.id, reason)

    def set_state(self, state: str, error: Optional[str] = None) -> None:
        core.kb_service_set_state(self._h, _number(SERVICE_STATES, state, "service state"),
                                  error)

    def remove(self) -> None:
        """Remove the service from its engine (steps interrupted). Idempotent."""
        core.kb_service_close(self._h)

    close = remove


class Engine:
    """The state engine on a Loop (SPEC 3-5). Options are kraken_engine_options' fields:
    start_frozen, no_sync_service, backoff_initial_ms, backoff_max_ms, max_failures,
    service_start_ms, no_path_retry_ms, timeout_scale."""

    def __init__(self, loop: Optional[Loop] = None, *, store: Optional[Store] = None,
                 self_id: Optional[NodeId] = None, log: Optional[Callable] = None,
                 log_level: Union[int, str] = "NOTICE", **options: Any):
        self.loop = loop if loop is not None else Loop()
        config = core.kb_engine_config_new()
        for name, value in options.items():
            if name.startswith("_") or not hasattr(config, name):
                raise TypeError("Engine() got an unexpected keyword argument %r" % name)
            setattr(config, name, value)
        self._h = core.kb_engine_new(self.loop._h, store._h if store is not None else None,
                                     None if self_id is None else id_text(self_id), config)
        self._owned: List[Any] = []     # services, subscriptions, modules made here
        self.store = store if store is not None else Store(core.kb_engine_store(self._h))
        if log is not None:
            self.set_log(log, log_level)

    def close(self) -> None:
        """Free the engine; its services, subscriptions and modules are detached. Idempotent."""
        core.kb_engine_close(self._h)
        self._owned.clear()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def self_id(self) -> uuid.UUID:
        return uuid.UUID(core.kb_engine_self_id(self._h))

    def set_log(self, callback: Optional[Callable[[str, str, str], None]],
                max_level: Union[int, str] = "NOTICE") -> None:
        """Call ``callback(level_name, subsystem, message)`` for the engine's log lines."""
        level = _number(LOG_LEVELS, max_level, "log level")
        cb = None if callback is None else _callback("log", lambda c: callback(
            LOG_LEVELS.get(core.kb_call_level(c), "?"), core.kb_call_subsystem(c),
            core.kb_call_message(c)))
        core.kb_engine_set_log(self._h, level, cb)

    def add_service(self, service_id: str, module: Optional[str] = None, *,
                    on_start=None, on_stop=None, on_mutate=None, on_interrupt=None,
                    on_config=None) -> Service:
        svc = Service(self, service_id, module, on_start, on_stop, on_mutate, on_interrupt,
                      on_config)
        self._owned.append(svc)
        return svc

    def subscribe(self, callback: Optional[Callable[[Event], None]] = None, *,
                  types: Union[None, str, Iterable[str]] = None, url: Optional[str] = None,
                  queue_limit: int = 0) -> Subscription:
        """Events of ``types`` (names, e.g. ["DISCOVERY"]; None: all) whose URL matches the
        glob ``url``."""
        sub = Subscription(self, callback, types, url, queue_limit)
        self._owned.append(sub)
        return sub

    def flush(self) -> None:
        """Deliver queued events now (without running the loop)."""
        core.kb_engine_flush(self._h)

    def freeze(self) -> None:
        core.kb_engine_freeze(self._h, True)

    def thaw(self) -> None:
        core.kb_engine_freeze(self._h, False)

    @property
    def frozen(self) -> bool:
        return core.kb_engine_frozen(self._h)

    def reset_node(self, node: NodeId) -> None:
        core.kb_engine_reset_node(self._h, id_text(node))

    def status(self, node: NodeId) -> PlanStatus:
        nid = id_text(node)
        return PlanStatus(core.kb_engine_node_state(self._h, nid),
                          lines(core.kb_engine_node_plan(self._h, nid)),
                          core.kb_engine_node_step(self._h, nid),
                          core.kb_engine_node_failures(self._h, nid),
                          core.kb_engine_node_reason(self._h, nid))

    def graph(self, node: Optional[NodeId] = None) -> dict:
        return json.loads(core.kb_engine_graph_json(
            self._h, None if node is None else id_text(node)))

    def disable_mutation(self, service_id: str, mutation_id: str, disabled: bool = True) -> None:
        core.kb_engine_mutation_disable(self._h, service_id, mutation_id, disabled)

    def set_mutation_timeout(self, service_id: str, mutation_id: str,
                             timeout: Optional[float]) -> None:
        core.kb_engine_mutation_set_timeout(self._h, service_id, mutation_id, _ms(timeout))
