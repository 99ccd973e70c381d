"""Drive a running `fleetup lab` with real third-party clients (Netmiko, scrapli, pyATS/unicon)
and check, with third-party parsers (TextFSM with ntc-templates, Genie), that every device says
what the lab's admin API says it is.

Run by tests/it/conformance.rs, which starts the lab and stages the images. Arguments: one JSON
document with `admin` (base URL of the admin API), `password`, `enable`, and `devices`: a list
of `{name, host, port, persona, uplink, images: [three image files staged in flash],
kickstarts: [the kickstart image booted with each] or null}`.

Devices are driven at once, each in its own process (this script with one device); on each,
the three clients take their turns. Exit status 0 when every client agreed with the lab on
every device; otherwise each disagreement is printed as `FAIL …` and the exit status is 1.
"""

import json
import logging
import re
import subprocess
import sys
import time
import traceback
import urllib.request

from genie.conf.base import Device as GenieDevice
from genie.testbed import load as load_testbed
from netmiko import ConnectHandler
from ntc_templates.parse import parse_output
from scrapli.driver.core import IOSXEDriver, NXOSDriver
from unicon.core.errors import EOF as UniconEOF
from unicon.core.errors import SubCommandFailure

logging.basicConfig(level=logging.WARNING)

ARGS = json.loads(sys.argv[1])
ADMIN = ARGS["admin"]
PASSWORD = ARGS["password"]
ENABLE = ARGS["enable"]

# Bounds for the waits below: a reload takes the lab's --boot-time, a login a few seconds.
RELOAD_TIMEOUT = 120

PLATFORM = {
    "c2960x": "ios",
    "c9300": "iosxe",
    "n9k": "nxos",
    "n7k": "nxos",
    "c9300-stack": "iosxe",
    "c2960x-stack": "ios",
    "c9400-dual-sup": "iosxe",
    "n9k-dual-sup": "nxos",
    "c9400-dual-sup-bundle": "iosxe",
}
# Stacks set every member's boot variable (`boot system switch all`), as an engineer does.
STACKS = {"c9300-stack", "c2960x-stack"}
# Commands a persona has no answer for, as the real device has none: a Catalyst 9400 with two
# supervisors is no stack (`show switch`).
# The lab answers the install commands in install mode only (a bundle-mode device's answer is
# not in the captures it follows, and fleetup's bundle-mode driver never sends them).
NOT_ON = {
    "c9400-dual-sup": {"show switch"},
    "c9400-dual-sup-bundle": {
        "show switch",
        "show install summary",
        "show install active",
        "show install committed",
    },
}
NETMIKO_TYPE = {"ios": "cisco_ios", "iosxe": "cisco_xe", "nxos": "cisco_nxos"}
NTC_PLATFORM = {"ios": "cisco_ios", "iosxe": "cisco_ios", "nxos": "cisco_nxos"}

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")
    print(f"FAIL {where}: {message}", flush=True)


def check(where, what, got, want):
    if got != want:
        fail(where, f"{what}: client read {got!r}, the lab says {want!r}")
    else:
        print(f"ok   {where}: {what} = {got!r}", flush=True)


def admin(name):
    with urllib.request.urlopen(f"{ADMIN}/api/devices/{name}", timeout=10) as r:
        return json.load(r)


def admin_fault(name, fault, on):
    method = "POST" if on else "DELETE"
    url = f"{ADMIN}/api/devices/{name}/faults" + ("" if on else f"/{fault}")
    data = json.dumps({"fault": fault}).encode() if on else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def wait_back(name, count):
    """Until the admin API shows the device up after its `count`-th reload."""
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        s = admin(name)
        if s["reload_count"] >= count and s["power"] == "up":
            return s
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not come back from reload {count}")


def genie_parse(platform, command, output):
    dev = GenieDevice("lab", os=platform)
    dev.custom.setdefault("abstraction", {})["order"] = ["os"]
    return dev.parse(command, output=output)


def textfsm(platform, command, output):
    return parse_output(platform=NTC_PLATFORM[platform], command=command, data=output)


def file_name(path):
    return path.replace("///", "/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


class Cli:
    """One client's session: `send(command)` returns the output text."""

    def __init__(self, client, dev):
        self.client = client
        self.dev = dev
        self.platform = PLATFORM[dev["persona"]]
        self.where = f"{client} {dev['name']} ({dev['persona']})"
        self.conn = None

    def connect(self):
        d, p = self.dev, self.platform
        if self.client == "netmiko":
            self.conn = ConnectHandler(
                device_type=NETMIKO_TYPE[p],
                host=d["host"],
                port=d["port"],
                username="admin",
                password=PASSWORD,
                secret=ENABLE,
                fast_cli=False,
            )
            self.conn.enable()
            return self.conn.check_enable_mode()
        if self.client == "scrapli":
            cls = NXOSDriver if p == "nxos" else IOSXEDriver
            self.conn = cls(
                host=d["host"],
                port=d["port"],
                auth_username="admin",
                auth_password=PASSWORD,
                auth_secondary=ENABLE,
                auth_strict_key=False,
                ssh_config_file=False,
                transport="system",
                transport_options={
                    "open_cmd": ["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
                },
            )
            self.conn.open()
            return self.conn.get_prompt().endswith("#")
        # pyATS/unicon with its default connection settings: its setup commands run.
        tb = load_testbed(
            {
                "devices": {
                    d["name"]: {
                        "os": p,
                        "credentials": {
                            "default": {"username": "admin", "password": PASSWORD},
                            "enable": {"password": ENABLE},
                        },
                        "connections": {
                            "cli": {
                                "protocol": "ssh",
                                "ip": d["host"],
                                "port": d["port"],
                                "ssh_options": "-o StrictHostKeyChecking=no "
                                "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
                            }
                        },
                    }
                }
            }
        )
        self.conn = tb.devices[d["name"]]
        self.conn.connect(log_stdout=False, learn_hostname=True)
        # Seconds unicon waits before it logs in again after a reload (240 by default).
        self.conn.settings.RELOAD_WAIT = 2
        self.conn.settings.POST_RELOAD_WAIT = 1
        return self.conn.is_connected()

    def send(self, command):
        if self.client == "netmiko":
            return self.conn.send_command(command, read_timeout=30)
        if self.client == "scrapli":
            return self.conn.send_command(command).result
        return self.conn.execute(command)

    def configure(self, lines):
        if self.client == "netmiko":
            out = self.conn.send_config_set(lines)
            out += self.conn.save_config()
            return out
        if self.client == "scrapli":
            resp = self.conn.send_configs(lines)
            if resp.failed:
                raise RuntimeError(f"send_configs failed: {resp.result}")
            save = (
                "copy running-config startup-config"
                if self.platform == "nxos"
                else "write memory"
            )
            return resp.result + self.conn.send_command(save).result
        out = self.conn.configure(lines)
        save = (
            "copy running-config startup-config"
            if self.platform == "nxos"
            else "write memory"
        )
        return out + self.conn.execute(save)

    def reload(self):
        """Reload; the session ends with it."""
        nxos = self.platform == "nxos"
        if self.client == "netmiko":
            out = self.conn.send_command_timing("reload", read_timeout=10)
            try:
                if nxos:
                    self.conn.send_command_timing("y", read_timeout=3)
                else:
                    self.conn.send_command_timing("", read_timeout=3)
            except Exception:  # the device cuts the session as it reloads
                pass
            try:
                self.conn.disconnect()
            except Exception:
                pass
            return out
        if self.client == "scrapli":
            question = "(y/n)?  [n]" if nxos else "[confirm]"
            answer = "y" if nxos else ""
            try:
                self.conn.send_interactive(
                    [("reload", question, False), (answer, "", False)],
                    timeout_ops=5,
                )
            except Exception:  # the device cuts the session as it reloads
                pass
            try:
                self.conn.close()
            except Exception:
                pass
            return ""
        # unicon's reload service answers the dialog, sees the session drop, waits, logs in
        # again and runs its setup commands once more. Over SSH the session's end (as every
        # device's vty gives it) reaches its dialog as EOF, which it re-raises unless
        # raise_on_error is off; only then does its reconnect path run (Reload.call_service in
        # unicon/plugins/generic/service_implementation.py: `if not con.connected: ...`).
        if self.platform == "nxos":
            # unicon's NX-OS reload catches only a timeout from its dialog: the EOF of a vty
            # session that the switch closes as it reloads fails the service before its own
            # reconnect path runs (Reload.call_service in unicon/plugins/nxos/
            # service_implementation.py; see docs/lab.md). Log in again with unicon instead.
            try:
                self.conn.reload(timeout=RELOAD_TIMEOUT)
            except SubCommandFailure as e:
                if not isinstance(e.__cause__, UniconEOF):
                    raise
            self.conn.disconnect()
            wait_back(self.dev["name"], self.dev["reload_target"])
            self.conn.connect(log_stdout=False, learn_hostname=True)
            return self.conn.is_connected()
        result = self.conn.reload(timeout=RELOAD_TIMEOUT, raise_on_error=False)
        if not result or not self.conn.is_connected():
            raise RuntimeError(f"unicon did not log in again after the reload: {result!r}")
        return result

    def close(self):
        try:
            if self.client == "netmiko":
                self.conn.disconnect()
            elif self.client == "scrapli":
                self.conn.close()
            else:
                self.conn.disconnect()
        except Exception:
            pass


def version_facts(platform, text, kickstart):
    """What TextFSM and Genie read in `show version`: version, image file, model and serial,
    and on a Nexus with separate images the kickstart file (and its version where the parser
    gives it). A field the parser does not give is left out."""
    fsm = textfsm(platform, "show version", text)[0]
    g = genie_parse(platform, "show version", text)
    if platform == "nxos":
        by_fsm = {
            "version": fsm["os"],
            "model": fsm["platform"],
            "serial": fsm["serial"] if "serial" in fsm else fsm["serial_number"],
        }
        # ntc-templates' cisco_nxos_show_version takes BOOT_IMAGE from the `NXOS image file
        # is:` line, or on a Nexus with separate images from `kickstart image file is:`, and
        # reads no `system image file is:` line: there it gives the kickstart, not the system
        # image (https://github.com/networktocode/ntc-templates/blob/master/ntc_templates/
        # templates/cisco_nxos_show_version.textfsm). See docs/lab.md.
        by_fsm["kickstart" if kickstart else "image"] = file_name(fsm["boot_image"])
        hw = g["platform"]["hardware"]
        sw = g["platform"]["software"]
        by_genie = {
            "version": sw["system_version"],
            "image": file_name(sw["system_image_file"]),
            "model": hw["model"],
            "serial": hw["processor_board_id"],
        }
        if kickstart:
            by_genie["kickstart"] = file_name(sw["kickstart_image_file"])
            by_genie["kickstart version"] = sw["kickstart_version"]
        return by_fsm, by_genie
    by_fsm = {
        "version": fsm["version"],
        "image": file_name(fsm["running_image"]),
        "model": fsm["hardware"][0],
        "serial": fsm["serial"][0],
    }
    v = g["version"]
    by_genie = {
        "version": v.get("xe_version", v["version"]),
        "image": file_name(v["system_image"]),
        "model": v["chassis"],
        "serial": v["chassis_sn"],
    }
    return by_fsm, by_genie


def check_version(cli, state):
    text = cli.send("show version")
    kickstart = state.get("running_kickstart")
    want_kickstart = file_name(kickstart) if kickstart else None
    for parser, got in zip(
        ("textfsm", "genie"), version_facts(cli.platform, text, want_kickstart is not None)
    ):
        # ntc-templates reads IOS-XE's version from the `Cisco IOS Software … Version 17.9.4a`
        # line, which has no leading zeros; Genie's xe_version is the `17.09.04a` of the first.
        want = state["version"]
        if cli.platform == "iosxe" and parser == "textfsm":
            want = ".".join(p.lstrip("0") or "0" for p in want.split("."))
        check(cli.where, f"show version ({parser}) version", got["version"], want)
        if "image" in got:
            want_image = file_name(state["running_image"])
            check(cli.where, f"show version ({parser}) image", got["image"], want_image)
        if want_kickstart is not None:
            # Every parser reads the kickstart somewhere; the test boots pairs of one release.
            check(cli.where, f"show version ({parser}) kickstart", got.get("kickstart"),
                  want_kickstart)
            if "kickstart version" in got:
                check(cli.where, f"show version ({parser}) kickstart version",
                      got["kickstart version"], state["version"])
        # NX-OS prints the chassis without its `N9K-` / `N7K-` prefix (`Nexus9000
        # C93180YC-EX`, `Nexus7000 C7009 (9 Slot) Chassis`, which both parsers cut to C7009).
        model = got["model"]
        got_model = model if cli.platform != "nxos" else model.split()[-1]
        want_model = state["model"] if cli.platform != "nxos" else state["model"][4:]
        check(cli.where, f"show version ({parser}) model", got_model, want_model)
        check(cli.where, f"show version ({parser}) serial", got["serial"], state["serial"])


def check_dir(cli, state):
    fs = state["flash"]["filesystem"]
    text = cli.send(f"dir {fs}:")
    want = {f["name"]: f["size"] for f in state["flash"]["files"]}
    fsm = textfsm(cli.platform, "dir", text)
    by_fsm = {
        r.get("name") or r["item_name"]: int(r["size"])
        for r in fsm
        if r.get("name") or r.get("item_name")
    }
    check(cli.where, "dir (textfsm) files", by_fsm, want)
    g = genie_parse(cli.platform, "dir", text)
    if cli.platform == "nxos":
        files = g["files"]
    else:
        files = g["dir"][f"{fs}:/"]["files"]
    by_genie = {n: int(f["size"]) for n, f in files.items()}
    check(cli.where, "dir (genie) files", by_genie, want)


def check_boot(cli, state):
    text = cli.send("show boot")
    want = ";".join(state["boot_variable"])
    g = genie_parse(cli.platform, "show boot", text)
    if cli.platform == "nxos":
        sup = g["next_reload_boot_variable"]["sup_number"]["sup-1"]
        got = sup["system_variable"]
        if state.get("boot_kickstart"):
            check(
                cli.where,
                "kickstart boot variable (genie)",
                sup.get("kickstart_variable"),
                state["boot_kickstart"],
            )
    elif cli.platform == "iosxe" and "active" in g:
        # A chassis with two supervisors (genieparser golden_output_cat9400): the active's and
        # the standby's boot variables.
        got = g["active"]["boot_variable"].rstrip(";")
        check(cli.where, "standby boot variable (genie)",
              g["standby"]["boot_variable"].rstrip(";"), want)
    elif cli.platform == "iosxe":
        got = g["next_reload_boot_variable"].rstrip(";")
    else:
        got = g["boot_path_list"]
    check(cli.where, "boot variable (genie)", got, want)
    # ntc-templates has no NX-OS `show boot` template, and its cisco_ios one stops at the
    # `MANUAL_BOOT variable = no` line of a Catalyst 9400 with two supervisors (the layout of
    # genieparser iosxe/ShowBoot golden_output_cat9400): Genie alone reads those.
    if cli.platform != "nxos" and not cli.dev["persona"].startswith("c9400-dual-sup"):
        fsm = textfsm(cli.platform, "show boot", text)[0]
        got = fsm.get("boot_path") or fsm.get("current_boot_variables") or ""
        check(cli.where, "boot variable (textfsm)", got.rstrip(";"), want)


def ports(cli, parser):
    """{port: up?} from `show ip interface brief` / `show interfaces status`."""
    nxos = cli.platform == "nxos"
    cmd = "show interface status" if nxos else "show interfaces status"
    text = cli.send(cmd)
    if parser == "genie":
        rows = genie_parse(cli.platform, cmd, text)["interfaces"]
        status = {n: r["status"] == "connected" for n, r in rows.items()}
    else:
        rows = textfsm(cli.platform, cmd, text)
        status = {r["port"]: r["status"] == "connected" for r in rows}
    return status


def cdp_devices(cli, parser):
    text = cli.send("show cdp neighbors")
    if parser == "genie":
        rows = genie_parse(cli.platform, "show cdp neighbors", text)["cdp"]["index"]
        return sorted(r["device_id"] for r in rows.values())
    rows = textfsm(cli.platform, "show cdp neighbors", text)
    return sorted(r.get("neighbor_name") or r.get("neighbor") for r in rows)


def check_parsers_read(cli, commands):
    """Both parsers (where each has a parser for the command) read the lab's output."""
    for cmd, parsers in commands:
        text = cli.send(cmd)
        for p in parsers:
            try:
                got = genie_parse(cli.platform, cmd, text) if p == "genie" else textfsm(
                    cli.platform, cmd, text
                )
            except Exception as e:
                fail(cli.where, f"{cmd} ({p}) cannot read the lab's output: {e}")
                continue
            if not got:
                fail(cli.where, f"{cmd} ({p}) read nothing from {text!r}")
            else:
                print(f"ok   {cli.where}: {cmd} ({p}) parsed", flush=True)


CHECK_COMMANDS = {
    "ios": [
        ("show ip interface brief", ["textfsm", "genie"]),
        ("show interfaces status", ["textfsm", "genie"]),
        ("show cdp neighbors", ["textfsm", "genie"]),
        ("show cdp neighbors detail", ["textfsm", "genie"]),
        ("show lldp neighbors", ["textfsm", "genie"]),
        ("show inventory", ["textfsm", "genie"]),
        ("show switch", ["genie"]),
        ("show clock", ["textfsm", "genie"]),
    ],
    "iosxe": [
        ("show ip interface brief", ["textfsm", "genie"]),
        ("show interfaces status", ["textfsm", "genie"]),
        ("show cdp neighbors", ["textfsm", "genie"]),
        ("show cdp neighbors detail", ["textfsm", "genie"]),
        ("show lldp neighbors", ["textfsm", "genie"]),
        ("show inventory", ["textfsm", "genie"]),
        ("show switch", ["genie"]),
        # ntc-templates' cisco_ios show_redundancy knows only `Peer (slot: unavailable) …`, not
        # the `Peer (slot: 0) information is not available …` line of the captured Catalyst
        # (genieparser iosxe ShowRedundancy golden_output_c3850): Genie reads it.
        ("show redundancy", ["genie"]),
        ("show install summary", ["genie"]),
        ("show install active", ["genie"]),
        ("show install committed", ["genie"]),
        ("show module", ["genie"]),
        ("show hosts", ["genie"]),
        ("show clock", ["textfsm", "genie"]),
    ],
    "nxos": [
        ("show ip interface brief", ["textfsm", "genie"]),
        ("show interface status", ["textfsm", "genie"]),
        ("show cdp neighbors", ["textfsm", "genie"]),
        ("show cdp neighbors detail", ["textfsm", "genie"]),
        # Genie has no NX-OS parser for `show lldp neighbors` (only `… detail`).
        ("show lldp neighbors", ["textfsm"]),
        ("show inventory", ["textfsm", "genie"]),
        ("show module", ["textfsm", "genie"]),
        ("show install all status", ["genie"]),
        ("show clock", ["textfsm"]),
    ],
}


def round_trip(client, dev, k, with_link_fault):
    """One client on one device: read, configure, reload into its `k`-th image (and
    kickstart), read again."""
    image = dev["images"][k]
    cli = Cli(client, dev)
    name = dev["name"]
    fs = admin(name)["flash"]["filesystem"]
    if not cli.connect():
        fail(cli.where, "not in privileged mode after connect and enable")
        return
    print(f"ok   {cli.where}: connected and enabled", flush=True)
    state = admin(name)
    check_version(cli, state)
    check_dir(cli, state)
    check_boot(cli, state)
    skip = NOT_ON.get(dev["persona"], set())
    check_parsers_read(cli, [c for c in CHECK_COMMANDS[cli.platform] if c[0] not in skip])
    before_ports = {p: ports(cli, p) for p in ("textfsm", "genie")}
    before_cdp = {p: cdp_devices(cli, p) for p in ("textfsm", "genie")}

    uplink = dev["uplink"]
    description = f"checked by {client}"
    kickstart = dev["kickstarts"][k] if dev.get("kickstarts") else None
    if kickstart:
        # A Nexus 7000 with separate images, changed by hand: both boot variables in
        # configuration mode, saved, then a reload boots the pair they name.
        boot = [f"boot kickstart {fs}:{kickstart}", f"boot system {fs}:{image}"]
    elif cli.platform == "nxos":
        boot = [f"boot nxos {fs}:{image}"]
    elif dev["persona"] in STACKS:
        boot = [f"boot system switch all {fs}:{image}"]
    else:
        boot = [f"boot system {fs}:{image}"]
    cli.configure(boot + [f"interface {uplink}", f"description {description}", "exit"])
    state = admin(name)
    check(cli.where, "unsaved changes after save", state["unsaved_changes"], False)
    check(
        cli.where,
        "boot variable after send_config_set",
        [file_name(b) for b in state["boot_variable"]][:1],
        [image],
    )
    if kickstart:
        check(
            cli.where,
            "kickstart boot variable after send_config_set",
            file_name(state.get("boot_kickstart") or ""),
            kickstart,
        )
    run = cli.send("show running-config | include description")
    if description not in run:
        fail(cli.where, f"the new description is not in the running config: {run!r}")
    check_boot(cli, state)

    count = state["reload_count"] + 1
    dev["reload_target"] = count
    if with_link_fault:
        admin_fault(name, "link-down-after-reload", True)
    cli.reload()
    state = wait_back(name, count)
    if with_link_fault:
        admin_fault(name, "link-down-after-reload", False)
    if client != "unicon":
        cli = Cli(client, dev)
        if not cli.connect():
            fail(cli.where, "not in privileged mode after the reload")
            return
    check(cli.where, "version after reload", state["version"] != dev["old_version"], True)
    check(cli.where, "running image after reload", file_name(state["running_image"]), image)
    if kickstart:
        check(
            cli.where,
            "running kickstart after reload",
            file_name(state.get("running_kickstart") or ""),
            kickstart,
        )
    check_version(cli, state)
    after_ports = {p: ports(cli, p) for p in ("textfsm", "genie")}
    after_cdp = {p: cdp_devices(cli, p) for p in ("textfsm", "genie")}
    for p in ("textfsm", "genie"):
        if with_link_fault:
            down = [n for n, up in after_ports[p].items() if before_ports[p].get(n) and not up]
            check(cli.where, f"ports down after the faulty reload ({p})", len(down), 1)
            check(
                cli.where,
                f"CDP neighbors lost with the link ({p})",
                len(before_cdp[p]) - len(after_cdp[p]),
                1,
            )
        else:
            check(cli.where, f"ports after reload ({p})", after_ports[p], before_ports[p])
            check(cli.where, f"CDP neighbors after reload ({p})", after_cdp[p], before_cdp[p])
    cli.close()


def one_device(dev):
    """The three clients, one after the other, on one device."""
    clients = ["netmiko", "scrapli", "unicon"]
    dev["old_version"] = admin(dev["name"])["version"]
    for k, client in enumerate(clients):
        try:
            round_trip(client, dev, k, with_link_fault=client == "unicon")
        except Exception as e:
            fail(f"{client} {dev['name']} ({dev['persona']})", f"{type(e).__name__}: {e}")
            traceback.print_exc()
        dev["old_version"] = admin(dev["name"])["version"]
    return len(clients)


def every_device():
    """Each device in its own process, all at once: a round spends most of its time waiting
    for prompts and reloads, and devices share nothing. Prints each device's report whole,
    in the order of the arguments; returns (rounds, disagreements)."""
    children = []
    for dev in ARGS["devices"]:
        one = dict(ARGS, devices=[dev])
        children.append(
            subprocess.Popen(
                [sys.executable, __file__, json.dumps(one)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    rounds = disagreements = 0
    for dev, child in zip(ARGS["devices"], children):
        out, _ = child.communicate()
        print(out, end="", flush=True)
        summary = re.search(r"^(\d+) client rounds, (\d+) disagreements$", out, re.M)
        if summary is None or child.returncode not in (0, 1):
            fail(f"{dev['name']} ({dev['persona']})", f"its run ended with {child.returncode}")
            continue
        rounds += int(summary[1])
        disagreements += int(summary[2])
    return rounds, disagreements


def main():
    if len(ARGS["devices"]) == 1:
        rounds, disagreements = one_device(ARGS["devices"][0]), 0
    else:
        rounds, disagreements = every_device()
    disagreements += len(failures)
    print(f"{rounds} client rounds, {disagreements} disagreements", flush=True)
    for f in failures:
        print(f"FAIL {f}", flush=True)
    sys.exit(1 if disagreements else 0)


if __name__ == "__main__":
    main()
