"""moto's EC2 server for tests/aws_moto.rs, with the VPN calls moto lacks.

moto 5.2.5 answers CreateVpnConnectionRoute, DeleteVpnConnectionRoute and
Enable/DisableVgwRoutePropagation with HTTP 500 (not implemented), and its
VPN connections carry no Options, Routes or VgwTelemetry. This script adds
them to moto's own EC2 classes before starting the server, so that the Rust
side talks to an unmodified EC2 API over HTTP and never knows it is moto:

- backend (``EC2Backend``): ``create_vpn_connection_route``,
  ``delete_vpn_connection_route`` (a connection's static routes, kept on the
  ``VPNConnection``), ``enable_vgw_route_propagation``,
  ``disable_vgw_route_propagation`` (the VGWs propagating into a
  ``RouteTable``);
- responses (``EC2Response``): the four actions, parameters as in the EC2
  API reference, empty answers as AWS gives;
- models: ``VPNConnection.options`` (static routing, 0.0.0.0/0 selectors,
  and ``TunnelOptions`` for two tunnels: outside addresses, inside /30s,
  pre-shared keys, AWS's default algorithm lists, lifetimes, DPD timeout and
  startup action, each overridable by CreateVpnConnection's
  ``Options.TunnelOptions`` as at AWS), ``.customer_gateway_configuration``
  (the XML AWS returns, from the same tunnel data, instead of moto's fixed
  template whose two tunnels are identical), ``.routes``
  (``VpnStaticRoute``: destination, source ``Static``, state
  ``available``), ``.vgw_telemetry`` (per tunnel ``DOWN`` / "IPSEC IS
  DOWN", unless the JSON file named by ``IPIECE_MOTO_TELEMETRY`` maps the
  tunnel's outside address to ``UP``: the test's stand-in for a VGW that
  sees the tunnel up);
  ``RouteTable.propagating_vgws`` and, in ``RouteTable.routes``, one route
  with origin ``EnableVgwRoutePropagation`` per static route of each VPN
  connection of a propagating VGW (unless the table has a route for it).

Usage: ``python server.py``: starts on 127.0.0.1 on a free port, prints
``PORT <n>`` on stdout, and runs until stdin is closed (the test's end);
``--port N --until-signal`` runs on port N until SIGTERM (a daemon test
starts it inside its network namespace).

With ``INITIAL_NO_AUTH_ACTION_COUNT=n`` in the environment, moto enforces
IAM after the first n requests (access keys must exist in its IAM backend,
policies are evaluated): the access-denied test uses that.
"""

import argparse
import datetime
import ipaddress
import json
import os
import random
import signal
import string
import sys
from types import SimpleNamespace

from moto.core.responses import EmptyResult
from moto.ec2.exceptions import InvalidVpnConnectionIdError
from moto.ec2.models import EC2Backend
from moto.ec2.models.route_tables import RouteTable
from moto.ec2.models.vpn_connections import VPNConnection
from moto.ec2.responses import EC2Response
from moto.moto_server.threaded_moto_server import ThreadedMotoServer


# ---- models ----------------------------------------------------------------

def _vpn_routes(vpn):
    """The static routes of a VPN connection: {cidr: state}."""
    if "_ipiece_routes" not in vpn.__dict__:
        vpn.__dict__["_ipiece_routes"] = {}
    return vpn.__dict__["_ipiece_routes"]


# AWS's default tunnel options (shared/reference/aws-vpn.md).
_P1_ENC = ["AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16"]
_P1_INT = ["SHA1", "SHA2-256", "SHA2-384", "SHA2-512"]
_P1_DH = [2, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]
_P2_DH = [2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]
_CONNECTIONS = [0]  # connections created, for distinct addresses


def _values(v):
    return [SimpleNamespace(value=x) for x in v]


def _tunnels(vpn):
    """The connection's two tunnels (dicts), made on first use."""
    if "_ipiece_tunnels" in vpn.__dict__:
        return vpn.__dict__["_ipiece_tunnels"]
    n = _CONNECTIONS[0]
    _CONNECTIONS[0] += 1
    rng = random.Random(vpn.id)
    alphabet = string.ascii_letters + string.digits + "._"
    tunnels = []
    for i in range(2):
        tunnels.append(
            {
                "outside_ip": f"203.0.113.{10 + 2 * n + i}",
                "inside_cidr": f"169.254.{(100 + 2 * n + i) % 256}.{4 * (n // 64)}/30",
                "psk": "".join(rng.choice(alphabet) for _ in range(32)),
                "p1_enc": list(_P1_ENC),
                "p1_int": list(_P1_INT),
                "p1_dh": list(_P1_DH),
                "p2_enc": list(_P1_ENC),
                "p2_int": list(_P1_INT),
                "p2_dh": list(_P2_DH),
                "p1_lifetime": 28800,
                "p2_lifetime": 3600,
                "dpd_timeout": 30,
                "startup_action": "add",
            }
        )
    spec = vpn.__dict__.get("_ipiece_spec") or []
    for t, o in zip(tunnels, spec):
        for key, name in [
            ("inside_cidr", "TunnelInsideCidr"),
            ("psk", "PreSharedKey"),
            ("p1_lifetime", "Phase1LifetimeSeconds"),
            ("p2_lifetime", "Phase2LifetimeSeconds"),
            ("dpd_timeout", "DPDTimeoutSeconds"),
            ("startup_action", "StartupAction"),
        ]:
            if o.get(name) is not None:
                t[key] = o[name]
        for key, name in [
            ("p1_enc", "Phase1EncryptionAlgorithms"),
            ("p1_int", "Phase1IntegrityAlgorithms"),
            ("p1_dh", "Phase1DHGroupNumbers"),
            ("p2_enc", "Phase2EncryptionAlgorithms"),
            ("p2_int", "Phase2IntegrityAlgorithms"),
            ("p2_dh", "Phase2DHGroupNumbers"),
        ]:
            if o.get(name):
                t[key] = [v["Value"] for v in o[name]]
    vpn.__dict__["_ipiece_tunnels"] = tunnels
    return tunnels


def _vpn_options(self):
    return SimpleNamespace(
        static_routes_only=True,
        local_ipv4_network_cidr="0.0.0.0/0",
        remote_ipv4_network_cidr="0.0.0.0/0",
        tunnel_inside_ip_version="ipv4",
        tunnel_options=[
            SimpleNamespace(
                outside_ip_address=t["outside_ip"],
                tunnel_inside_cidr=t["inside_cidr"],
                pre_shared_key=t["psk"],
                phase1_lifetime_seconds=t["p1_lifetime"],
                phase2_lifetime_seconds=t["p2_lifetime"],
                rekey_margin_time_seconds=270,
                rekey_fuzz_percentage=100,
                replay_window_size=1024,
                dpd_timeout_seconds=t["dpd_timeout"],
                dpd_timeout_action="clear",
                phase1_encryption_algorithms=_values(t["p1_enc"]),
                phase2_encryption_algorithms=_values(t["p2_enc"]),
                phase1_integrity_algorithms=_values(t["p1_int"]),
                phase2_integrity_algorithms=_values(t["p2_int"]),
                phase1_dh_group_numbers=_values(t["p1_dh"]),
                phase2_dh_group_numbers=_values(t["p2_dh"]),
                ike_versions=_values(["ikev1", "ikev2"]),
                startup_action=t["startup_action"],
            )
            for t in _tunnels(self)
        ],
    )


def _vpn_route_list(self):
    return [
        SimpleNamespace(destination_cidr_block=c, source="Static", state=s)
        for c, s in sorted(_vpn_routes(self).items())
    ]


def _telemetry_overrides():
    path = os.environ.get("IPIECE_MOTO_TELEMETRY")
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _vpn_telemetry(self):
    up = _telemetry_overrides()
    out = []
    for t in _tunnels(self):
        status = "UP" if up.get(t["outside_ip"]) == "UP" else "DOWN"
        out.append(
            SimpleNamespace(
                outside_ip_address=t["outside_ip"],
                status=status,
                status_message="" if status == "UP" else "IPSEC IS DOWN",
                last_status_change=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
                accepted_route_count=0,
            )
        )
    return out


_TUNNEL_XML = """  <ipsec_tunnel>
    <customer_gateway>
      <tunnel_outside_address><ip_address>{cgw_ip}</ip_address></tunnel_outside_address>
      <tunnel_inside_address>
        <ip_address>{cgw_inside}</ip_address>
        <network_mask>255.255.255.252</network_mask>
        <network_cidr>30</network_cidr>
      </tunnel_inside_address>
    </customer_gateway>
    <vpn_gateway>
      <tunnel_outside_address><ip_address>{vgw_ip}</ip_address></tunnel_outside_address>
      <tunnel_inside_address>
        <ip_address>{vgw_inside}</ip_address>
        <network_mask>255.255.255.252</network_mask>
        <network_cidr>30</network_cidr>
      </tunnel_inside_address>
    </vpn_gateway>
    <ike>
      <authentication_protocol>sha1</authentication_protocol>
      <encryption_protocol>aes-128-cbc</encryption_protocol>
      <lifetime>28800</lifetime>
      <perfect_forward_secrecy>group2</perfect_forward_secrecy>
      <mode>main</mode>
      <pre_shared_key>{psk}</pre_shared_key>
    </ike>
    <ipsec>
      <protocol>esp</protocol>
      <authentication_protocol>hmac-sha1-96</authentication_protocol>
      <encryption_protocol>aes-128-cbc</encryption_protocol>
      <lifetime>3600</lifetime>
      <perfect_forward_secrecy>group2</perfect_forward_secrecy>
      <mode>tunnel</mode>
      <clear_df_bit>true</clear_df_bit>
      <fragmentation_before_encryption>true</fragmentation_before_encryption>
      <tcp_mss_adjustment>1379</tcp_mss_adjustment>
      <dead_peer_detection>
        <interval>10</interval>
        <retries>3</retries>
      </dead_peer_detection>
    </ipsec>
  </ipsec_tunnel>
"""


def _vpn_xml(self):
    cgw = self.ec2_backend.get_customer_gateway(self.customer_gateway_id)
    parts = []
    for t in _tunnels(self):
        net = ipaddress.ip_network(t["inside_cidr"])
        parts.append(
            _TUNNEL_XML.format(
                cgw_ip=cgw.ip_address,
                vgw_ip=t["outside_ip"],
                cgw_inside=net.network_address + 2,
                vgw_inside=net.network_address + 1,
                psk=t["psk"],
            )
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<vpn_connection id="{self.id}">\n'
        f"  <customer_gateway_id>{self.customer_gateway_id}</customer_gateway_id>\n"
        f"  <vpn_gateway_id>{self.vpn_gateway_id or ''}</vpn_gateway_id>\n"
        f"  <vpn_connection_type>{self.type}</vpn_connection_type>\n"
        "  <vpn_connection_attributes>NoBGPVPNConnection</vpn_connection_attributes>\n"
        + "".join(parts)
        + "</vpn_connection>\n"
    )


# VPNConnection.__init__ sets self.options = None: a data descriptor wins.
VPNConnection.options = property(_vpn_options, lambda self, v: None)
VPNConnection.routes = property(_vpn_route_list)
VPNConnection.vgw_telemetry = property(_vpn_telemetry)
VPNConnection.customer_gateway_configuration = property(_vpn_xml)


def _propagating(table):
    if "_ipiece_vgws" not in table.__dict__:
        table.__dict__["_ipiece_vgws"] = []
    return table.__dict__["_ipiece_vgws"]


_original_routes = RouteTable.routes


def _table_routes(self):
    routes = list(_original_routes.fget(self))
    have = {r.destination_cidr_block for r in routes}
    for vgw in _propagating(self):
        for vpn in self.ec2_backend.vpn_connections.values():
            if vpn.vpn_gateway_id != vgw or vpn.state == "deleted":
                continue
            for cidr in sorted(_vpn_routes(vpn)):
                if cidr in have:
                    continue
                have.add(cidr)
                routes.append(
                    SimpleNamespace(
                        destination_cidr_block=cidr,
                        gateway_id=vgw,
                        origin="EnableVgwRoutePropagation",
                        state="active",
                    )
                )
    return routes


RouteTable.routes = property(_table_routes)
RouteTable.propagating_vgws = property(
    lambda self: [SimpleNamespace(gateway_id=g) for g in _propagating(self)]
)


# ---- backend ---------------------------------------------------------------

def _get_vpn(backend, vpn_id):
    vpn = backend.vpn_connections.get(vpn_id)
    if vpn is None or vpn.state == "deleted":
        raise InvalidVpnConnectionIdError(vpn_id)
    return vpn


def create_vpn_connection_route(self, vpn_connection_id, destination_cidr_block):
    _vpn_routes(_get_vpn(self, vpn_connection_id))[destination_cidr_block] = "available"


def delete_vpn_connection_route(self, vpn_connection_id, destination_cidr_block):
    _vpn_routes(_get_vpn(self, vpn_connection_id)).pop(destination_cidr_block, None)


def enable_vgw_route_propagation(self, route_table_id, gateway_id):
    table = self.get_route_table(route_table_id)
    self.get_vpn_gateway(gateway_id)
    if gateway_id not in _propagating(table):
        _propagating(table).append(gateway_id)


def disable_vgw_route_propagation(self, route_table_id, gateway_id):
    table = self.get_route_table(route_table_id)
    if gateway_id in _propagating(table):
        _propagating(table).remove(gateway_id)


EC2Backend.create_vpn_connection_route = create_vpn_connection_route
EC2Backend.delete_vpn_connection_route = delete_vpn_connection_route
EC2Backend.enable_vgw_route_propagation = enable_vgw_route_propagation
EC2Backend.disable_vgw_route_propagation = disable_vgw_route_propagation


# ---- responses -------------------------------------------------------------

def _r_create_vpn_connection_route(self):
    self.ec2_backend.create_vpn_connection_route(
        self._get_param("VpnConnectionId"), self._get_param("DestinationCidrBlock")
    )
    return EmptyResult()


def _r_delete_vpn_connection_route(self):
    self.ec2_backend.delete_vpn_connection_route(
        self._get_param("VpnConnectionId"), self._get_param("DestinationCidrBlock")
    )
    return EmptyResult()


def _r_enable_vgw_route_propagation(self):
    self.ec2_backend.enable_vgw_route_propagation(
        self._get_param("RouteTableId"), self._get_param("GatewayId")
    )
    return EmptyResult()


def _r_disable_vgw_route_propagation(self):
    self.ec2_backend.disable_vgw_route_propagation(
        self._get_param("RouteTableId"), self._get_param("GatewayId")
    )
    return EmptyResult()


_original_create_vpn_connection = EC2Response.create_vpn_connection


def _r_create_vpn_connection(self):
    """moto's CreateVpnConnection, keeping Options.TunnelOptions for the model."""
    spec = (self._get_param("Options") or {}).get("TunnelOptions") or []
    result = _original_create_vpn_connection(self)
    result.result["VpnConnection"].__dict__["_ipiece_spec"] = spec
    return result


EC2Response.create_vpn_connection = _r_create_vpn_connection
EC2Response.create_vpn_connection_route = _r_create_vpn_connection_route
EC2Response.delete_vpn_connection_route = _r_delete_vpn_connection_route
EC2Response.enable_vgw_route_propagation = _r_enable_vgw_route_propagation
EC2Response.disable_vgw_route_propagation = _r_disable_vgw_route_propagation


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument(
        "--until-signal",
        action="store_true",
        help="run until SIGTERM/SIGINT instead of until stdin closes (a daemon test's namespace)",
    )
    args = parser.parse_args()
    if args.until_signal:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(f"PORT {port}", flush=True)
    if args.until_signal:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    else:
        sys.stdin.read()  # until the test closes our stdin (or dies)
    server.stop()


if __name__ == "__main__":
    main()
