"""componentize-py's `Err` is a frozen dataclass. When a test fails with an `Err` that was raised
while another exception was handled (the connector's `except ...: raise Err(...)`), unittest
assigns `__traceback__` to the chained exceptions and the frozen `Err` refuses: the run aborts
with `FrozenInstanceError` and no summary. `allow_tracebacks` lets Python's own dunder attributes
through (fields stay frozen); `tests/__init__.py` applies it to every test module.
"""

from componentize_py_types import Err


def allow_tracebacks():
    frozen = Err.__setattr__
    if getattr(frozen, "allows_tracebacks", False):
        return

    def setattr_(self, name, value):
        if name.startswith("__") and name.endswith("__"):
            object.__setattr__(self, name, value)
        else:
            frozen(self, name, value)

    setattr_.allows_tracebacks = True
    Err.__setattr__ = setattr_


def error_of(call, *args):
    """The `ConnectorError` `call(*args)` raises as `Err` (fails the test when it returns)."""
    try:
        result = call(*args)
    except Err as e:
        return e.value
    raise AssertionError("expected Err, got %r" % (result,))
