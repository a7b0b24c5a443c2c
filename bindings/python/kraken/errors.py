"""kraken.Error and its subclasses: one per libkraken error code (include/kraken/error.h).

Every failed call raises the subclass of its code with the library's one-line message, e.g.
``kraken.NotFound("store_read: node 7e57... not found")``. Each class also derives from the
closest built-in exception, so ``except KeyError``/``ValueError``-style code keeps working.
"""

from . import core


class Error(Exception):
    """A libkraken call failed. ``code`` is the negative kraken_err, ``name`` its symbol."""

    code = 0
    name = "KRAKEN_ERROR"

    def __init__(self, message: str, code: int = None):
        super().__init__(message)
        if code is not None:
            self.code = code
            self.name = core.kb_err_name(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _error(name, code, *bases, doc):
    cls = type(name, (Error,) + bases, {"code": code, "name": core.kb_err_name(code),
                                          "__doc__": doc, "__module__": "kraken"})
    _BY_CODE[code] = cls
    return cls


_BY_CODE = {}
InvalidArgument = _error("InvalidArgument", core.KRAKEN_EINVAL, ValueError,
                         doc="Invalid argument or API misuse (KRAKEN_EINVAL).")
OutOfMemory = _error("OutOfMemory", core.KRAKEN_ENOMEM, MemoryError,
                     doc="Out of memory (KRAKEN_ENOMEM).")
NotFound = _error("NotFound", core.KRAKEN_ENOTFOUND, LookupError,
                  doc="Node, URL, schema or item does not exist (KRAKEN_ENOTFOUND).")
AlreadyExists = _error("AlreadyExists", core.KRAKEN_EEXISTS,
                       doc="Already exists (KRAKEN_EEXISTS).")
WrongType = _error("WrongType", core.KRAKEN_ETYPE, TypeError,
                   doc="Value of the wrong type for a URL or field (KRAKEN_ETYPE).")
ParseError = _error("ParseError", core.KRAKEN_EPARSE, ValueError,
                    doc="Malformed text: JSON, URL, value, UUID (KRAKEN_EPARSE).")
ProtocolError = _error("ProtocolError", core.KRAKEN_EPROTO,
                       doc="Malformed or truncated binary/wire input (KRAKEN_EPROTO).")
IOFailure = _error("IOFailure", core.KRAKEN_EIO, OSError,
                   doc="File or socket I/O failed (KRAKEN_EIO).")
AuthError = _error("AuthError", core.KRAKEN_EAUTH, PermissionError,
                   doc="Authentication or registration refused (KRAKEN_EAUTH).")
StateError = _error("StateError", core.KRAKEN_ESTATE, RuntimeError,
                    doc="Not valid now: closed or detached object, late answer (KRAKEN_ESTATE).")
LimitExceeded = _error("LimitExceeded", core.KRAKEN_ELIMIT,
                       doc="A size or count limit was exceeded (KRAKEN_ELIMIT).")
NoPath = _error("NoPath", core.KRAKEN_ENOPATH,
                doc="No mutation path reaches the goal (KRAKEN_ENOPATH).")
WrongThread = _error("WrongThread", core.KRAKEN_ETHREAD, RuntimeError,
                     doc="Called from a thread that does not own the object (KRAKEN_ETHREAD).")


def error_for(code: int, message: str) -> Error:
    """The exception instance for a failed call (used by the C layer)."""
    return _BY_CODE.get(code, Error)(message, code)


class CallbackWarning(RuntimeWarning):
    """A Python callback raised; the engine went on (see kraken.set_callback_error_handler)."""


core.kb_py_set_error_factory(error_for)
