"""The component's entry point: componentize-py looks for `class Screening` in module `app`.

Every module the connector uses is imported here, at top level: componentize-py snapshots the
interpreter after these imports run, and a module first imported inside a call is not in the
component (it fails at run time with ModuleNotFoundError).
"""

import json  # noqa: F401
import time  # noqa: F401

from wit_world import exports

import connector
import lookup  # noqa: F401
import text  # noqa: F401
from wasm_host import WasmHost

HOST = WasmHost()


class Screening(exports.Screening):
    def manifest(self):
        return connector.manifest()

    def list_packages(self):
        return connector.list_packages(HOST)

    def start_screening(self, request):
        return connector.start_screening(HOST, request)

    def handle_callback(self, request):
        return connector.handle_callback(HOST, request)
