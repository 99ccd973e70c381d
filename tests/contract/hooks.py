"""schemathesis hooks for fleetup's API contract test (tests/it/contract.rs).

fleetup logs in to the devices of its inventory (`POST /devices/{name}/facts`), so a device
that schemathesis creates with a generated address would send SSH, or a DNS query, off this
machine. Before each request, every `host` (and a playbook's transfer `server`) that is valid
but not on loopback becomes a loopback address. schemathesis then re-checks the case, so a
case stays positive or negative as it really is; invalid values stay as they are (they are
refused and never used).
"""

import ipaddress
import os
import re

import schemathesis

# The pattern the service validates hosts with, from its own OpenAPI document.
HOST = re.compile(os.environ["FLEETUP_HOST_PATTERN"])


def _on_loopback(value: str) -> bool:
    if value == "localhost":
        return True
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False


def _to_loopback(value: str) -> str:
    # A stable address per generated value, so that distinct hosts stay distinct.
    n = sum(value.encode()) % 250 + 2
    return f"127.0.200.{n}"


def _walk(node):
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key in ("host", "server") and isinstance(value, str):
                valid = HOST.search(value) is not None and "\n" not in value
                if (valid or key == "server") and not _on_loopback(value):
                    node[key] = _to_loopback(value)
            else:
                _walk(value)
    elif isinstance(node, list):
        for item in node:
            _walk(item)


@schemathesis.hook
def before_call(context, case, kwargs):
    if isinstance(case.body, (dict, list)):
        _walk(case.body)
