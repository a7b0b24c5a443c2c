"""Python bindings of libkraken (SWIG low layer kraken.core, hand-written layer here).

    import kraken
    with kraken.Engine() as engine:
        engine.store.create(kraken.Node(nodename="n1"))

Main classes: Loop, Engine, Store, Node, Service, Subscription, Mutation, MutationSet,
Module and ModuleClient (external modules of a kraken-daemon). Errors: kraken.Error and one
subclass per error code (NotFound, InvalidArgument, ...). See doc/BINDINGS.md.
"""

from . import core
from .errors import (AlreadyExists, AuthError, CallbackWarning, Error, InvalidArgument,
                     IOFailure, LimitExceeded, NoPath, NotFound, OutOfMemory, ParseError,
                     ProtocolError, StateError, WrongThread, WrongType)
from .engine import (Change, Engine, Event, Listener, Loop, Mutate, Mutation, MutationSet, Node, Plan,
                     PlanStatus, Request, Service, Store, Subscription,
                     set_callback_error_handler)
from .module import Module, ModuleClient
from . import aio

__version__ = core.kb_version()


def load_schemas(source) -> None:
    """Register schemas from a description file path, a JSON string or a dict."""
    import json
    import os
    if isinstance(source, dict):
        core.kb_schema_load_json(json.dumps(source), "schemas")
    elif isinstance(source, os.PathLike) or (isinstance(source, str)
                                             and not source.lstrip().startswith("{")):
        core.kb_schema_load_file(str(source))
    else:
        core.kb_schema_load_json(source, "schemas")


def enum_members(name: str) -> dict:
    """{member name: number} of a registered enum type ("PhysState")."""
    out = {}
    for line in (core.kb_enum_members(name) or "").split("\n"):
        if line:
            member, number = line.rsplit("=", 1)
            out[member] = int(number)
    return out


def canonical_url(url: str) -> str:
    return core.kb_url_canonical(url)


__all__ = ["AlreadyExists", "AuthError", "CallbackWarning", "Change", "Engine", "Error",
           "Event", "IOFailure", "InvalidArgument", "LimitExceeded", "Listener", "Loop",
           "Module", "ModuleClient", "Mutate", "Mutation", "MutationSet", "NoPath", "Node",
           "NotFound", "OutOfMemory", "ParseError", "Plan", "PlanStatus", "ProtocolError", "Request",
           "Service", "StateError", "Store", "Subscription", "WrongThread", "WrongType", "aio",
           "canonical_url", "enum_members", "load_schemas", "set_callback_error_handler"]
