from tests.errors import allow_tracebacks

allow_tracebacks()
