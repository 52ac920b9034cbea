"""The component's entry point: componentize-py looks for `class Screening` in module `app`.

Build (from the repository root; `scripts/toolchains.sh build` does this):

    .tools/py/bin/componentize-py -d wit -w connector componentize -p plugins/examples/python app \
        -o plugins/examples/target/certn_py.wasm

Every module is imported here, at top level: componentize-py snapshots the interpreter after the
imports run, and a module first imported inside a call is not in the component.
"""

import json  # noqa: F401  (imported at top level on purpose, see above)
import time  # noqa: F401

from wit_world import exports

import certn
import text  # noqa: F401
from wasm_host import WasmHost

HOST = WasmHost()


class Screening(exports.Screening):
    def manifest(self):
        return certn.manifest()

    def list_packages(self):
        return certn.list_packages(HOST)

    def start_screening(self, request):
        return certn.start_screening(HOST, request)

    def handle_callback(self, request):
        return certn.handle_callback(HOST, request)
