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
- models: ``VPNConnection.options`` (static routing, 0.0.0.0/0 selectors),
  ``.routes`` (``VpnStaticRoute``: destination, source ``Static``, state
  ``available``), ``.vgw_telemetry`` (two tunnels, DOWN);
  ``RouteTable.propagating_vgws`` and, in ``RouteTable.routes``, one route
  with origin ``EnableVgwRoutePropagation`` per static route of each VPN
  connection of a propagating VGW (unless the table has a route for it).

Usage: ``python server.py``: starts on 127.0.0.1 on a free port, prints
``PORT <n>`` on stdout, and runs until stdin is closed (the test's end).
"""

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


def _vpn_options(self):
    return SimpleNamespace(
        static_routes_only=True,
        local_ipv4_network_cidr="0.0.0.0/0",
        remote_ipv4_network_cidr="0.0.0.0/0",
        tunnel_inside_ip_version="ipv4",
        tunnel_options=[],
    )


def _vpn_route_list(self):
    return [
        SimpleNamespace(destination_cidr_block=c, source="Static", state=s)
        for c, s in sorted(_vpn_routes(self).items())
    ]


def _vpn_telemetry(self):
    return [
        SimpleNamespace(
            outside_ip_address=ip,
            status="DOWN",
            status_message="IPSEC IS DOWN",
            accepted_route_count=0,
        )
        for ip in ("203.0.113.1", "203.0.113.2")
    ]


# VPNConnection.__init__ sets self.options = None: a data descriptor wins.
VPNConnection.options = property(_vpn_options, lambda self, v: None)
VPNConnection.routes = property(_vpn_route_list)
VPNConnection.vgw_telemetry = property(_vpn_telemetry)


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


EC2Response.create_vpn_connection_route = _r_create_vpn_connection_route
EC2Response.delete_vpn_connection_route = _r_delete_vpn_connection_route
EC2Response.enable_vgw_route_propagation = _r_enable_vgw_route_propagation
EC2Response.disable_vgw_route_propagation = _r_disable_vgw_route_propagation


def main():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    server.stop()


if __name__ == "__main__":
    main()
