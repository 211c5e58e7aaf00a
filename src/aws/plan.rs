//! The route planner: what `wgctl aws sync` must change at AWS so that the
//! VPN connection and the VPC's route tables route the on-prem prefixes to
//! our virtual private gateway (VGW). Pure: the caller reads the state
//! (DescribeVpnConnections, DescribeRouteTables) and applies the operations.
//!
//! Desired state, for every desired prefix (the LAN prefixes and the
//! WireGuard subnet):
//!
//! - it is a static route of the VPN connection (CreateVpnConnectionRoute);
//!   without it the VGW does not send that prefix into the tunnels;
//! - each managed route table routes it to the VGW: a route to the VGW
//!   (CreateRoute), or, when [`PlanInput::propagation`] is set, route
//!   propagation from the VGW enabled on the table (the VGW then propagates
//!   the connection's static routes into it).
//!
//! Rules:
//!
//! - Only routes that point at our VGW are ever deleted, only when they are
//!   no longer desired, and only with [`PlanInput::prune`]; without it they
//!   are listed as [`Plan::stale`]. Propagated routes are never deleted
//!   (they go when the static route of the connection goes).
//! - Routes to any other target are never touched: a desired prefix routed
//!   elsewhere in a table is a [`Conflict`], reported and left alone.
//! - A route that exists counts, whatever its origin (a propagated route to
//!   our VGW satisfies a table in static mode, a static one in propagation
//!   mode).
//! - Idempotent: planning again over the state the operations produce gives
//!   an empty plan.
//!
//! `--prune` assumes that the VGW's static routes in the managed tables
//! belong to this VPN connection: with several connections on one VGW, a
//! prefix another connection needs would be removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ipnet::IpNet;

/// State of a VPN connection's static route (`VpnStaticRoute.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VpnRouteState {
    /// `pending`: being created.
    Pending,
    /// `available`.
    Available,
    /// `deleting`: on its way out (treated as absent).
    Deleting,
    /// `deleted` (treated as absent).
    Deleted,
}

impl VpnRouteState {
    /// The state for AWS's string (`available`, ...); unknown ones count as
    /// present (`Available`), the safe side for an idempotent plan.
    pub fn from_aws(s: &str) -> VpnRouteState {
        match s {
            "pending" => VpnRouteState::Pending,
            "deleting" => VpnRouteState::Deleting,
            "deleted" => VpnRouteState::Deleted,
            _ => VpnRouteState::Available,
        }
    }

    fn present(self) -> bool {
        matches!(self, VpnRouteState::Pending | VpnRouteState::Available)
    }
}

/// One static route of the VPN connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnRoute {
    /// `DestinationCidrBlock`.
    pub prefix: IpNet,
    /// `State`.
    pub state: VpnRouteState,
}

/// Where a route-table route sends its traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteTarget {
    /// `GatewayId`: a VGW (`vgw-...`), an internet gateway (`igw-...`) or
    /// `local`.
    Gateway(String),
    /// Any other target (NAT gateway, peering connection, transit gateway,
    /// network interface, instance, ...), by its ID.
    Other(String),
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteTarget::Gateway(id) | RouteTarget::Other(id) => f.write_str(id),
        }
    }
}

/// How a route got into its table (`Route.Origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteOrigin {
    /// `CreateRouteTable`: the VPC's local route.
    CreateRouteTable,
    /// `CreateRoute`: added by someone (or by us); deletable.
    CreateRoute,
    /// `EnableVgwRoutePropagation`: propagated by a VGW; not deletable.
    EnableVgwRoutePropagation,
}

/// One route of a route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRoute {
    /// `DestinationCidrBlock` / `DestinationIpv6CidrBlock` (routes to prefix
    /// lists are left out by the caller: they are never ours).
    pub destination: IpNet,
    /// Where it goes.
    pub target: RouteTarget,
    /// How it got there.
    pub origin: RouteOrigin,
}

/// A managed route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    /// `rtb-...`.
    pub id: String,
    /// Its routes.
    pub routes: Vec<TableRoute>,
    /// The VGWs propagating into it (`PropagatingVgws`).
    pub propagating_vgws: Vec<String>,
}

/// Everything the planner looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInput {
    /// The on-prem prefixes AWS must route to us (host bits are cleared and
    /// duplicates dropped).
    pub desired: Vec<IpNet>,
    /// Our VGW (`vgw-...`).
    pub vgw_id: String,
    /// The VPN connection (`vpn-...`), for rendering.
    pub vpn_connection_id: String,
    /// The VPN connection's static routes.
    pub vpn_routes: Vec<VpnRoute>,
    /// The managed route tables.
    pub route_tables: Vec<RouteTable>,
    /// Route the tables by VGW route propagation instead of static routes.
    pub propagation: bool,
    /// Delete routes to our VGW that are no longer desired.
    pub prune: bool,
}

/// One change at AWS, named after the EC2 call that makes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Add a static route to the VPN connection.
    CreateVpnConnectionRoute {
        /// The on-prem prefix.
        prefix: IpNet,
    },
    /// Enable route propagation from the VGW on a route table.
    EnableVgwRoutePropagation {
        /// The route table.
        table: String,
    },
    /// Add a route to the VGW to a route table.
    CreateRoute {
        /// The route table.
        table: String,
        /// The on-prem prefix.
        prefix: IpNet,
    },
    /// Delete a route to the VGW from a route table.
    DeleteRoute {
        /// The route table.
        table: String,
        /// The prefix no longer desired.
        prefix: IpNet,
    },
    /// Remove a static route from the VPN connection.
    DeleteVpnConnectionRoute {
        /// The prefix no longer desired.
        prefix: IpNet,
    },
}

/// A desired prefix that a route table sends to another target: reported,
/// never replaced.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conflict {
    /// The route table.
    pub table: String,
    /// The desired prefix.
    pub prefix: IpNet,
    /// Where the table sends it instead.
    pub target: RouteTarget,
}

/// A route to our VGW that is no longer desired, kept because the plan was
/// made without `prune`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stale {
    /// A static route of the VPN connection.
    VpnRoute {
        /// The prefix.
        prefix: IpNet,
    },
    /// A route to the VGW in a route table.
    TableRoute {
        /// The route table.
        table: String,
        /// The prefix.
        prefix: IpNet,
    },
}

/// The result of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// What to do, in the order to do it: creations first (VPN connection,
    /// then propagation, then table routes), deletions last (table routes,
    /// then the VPN connection), so that routes are made before they are
    /// broken.
    pub operations: Vec<Operation>,
    /// Desired prefixes routed elsewhere (left alone).
    pub conflicts: Vec<Conflict>,
    /// Routes to our VGW no longer desired, kept (without `prune`).
    pub stale: Vec<Stale>,
    /// Our VGW, for rendering.
    pub vgw_id: String,
    /// The VPN connection, for rendering.
    pub vpn_connection_id: String,
}

/// `wgctl aws plan`'s exit status when AWS is in step with the file.
pub const EXIT_IN_STEP: u8 = 0;
/// `wgctl aws plan`'s exit status on an error.
pub const EXIT_ERROR: u8 = 1;
/// `wgctl aws plan`'s exit status when changes are pending.
pub const EXIT_CHANGES_PENDING: u8 = 2;

/// Works out the operations that bring AWS in step with `input.desired`.
pub fn plan(input: &PlanInput) -> Plan {
    let desired: BTreeSet<IpNet> = input.desired.iter().map(IpNet::trunc).collect();
    let mut creates = Vec::new();
    let mut deletes = Vec::new();
    let mut conflicts = Vec::new();
    let mut stale = Vec::new();

    // The VPN connection's static routes.
    let present: BTreeSet<IpNet> = input
        .vpn_routes
        .iter()
        .filter(|r| r.state.present())
        .map(|r| r.prefix.trunc())
        .collect();
    for p in desired.difference(&present) {
        creates.push(Operation::CreateVpnConnectionRoute { prefix: *p });
    }
    let mut vpn_deletes = Vec::new();
    for p in present.difference(&desired) {
        if input.prune {
            vpn_deletes.push(Operation::DeleteVpnConnectionRoute { prefix: *p });
        } else {
            stale.push(Stale::VpnRoute { prefix: *p });
        }
    }

    // The route tables, in ID order.
    let mut tables: Vec<&RouteTable> = input.route_tables.iter().collect();
    tables.sort_by(|a, b| a.id.cmp(&b.id));
    tables.dedup_by(|a, b| a.id == b.id);
    let ours = RouteTarget::Gateway(input.vgw_id.clone());
    let mut propagation = Vec::new();
    for t in tables {
        let propagating = t.propagating_vgws.contains(&input.vgw_id);
        if input.propagation && !propagating {
            propagation.push(Operation::EnableVgwRoutePropagation {
                table: t.id.clone(),
            });
        }
        // Destination -> its routes (a destination can show twice: a static
        // route and a propagated one).
        let mut by_dest: BTreeMap<IpNet, Vec<&TableRoute>> = BTreeMap::new();
        for r in &t.routes {
            by_dest.entry(r.destination.trunc()).or_default().push(r);
        }
        for p in &desired {
            let routes = by_dest.get(p).map(Vec::as_slice).unwrap_or(&[]);
            // A static route wins over a propagated one for the same prefix.
            let effective = routes
                .iter()
                .find(|r| r.origin != RouteOrigin::EnableVgwRoutePropagation)
                .or_else(|| routes.first());
            match effective {
                Some(r) if r.target == ours => {}
                Some(r) => conflicts.push(Conflict {
                    table: t.id.clone(),
                    prefix: *p,
                    target: r.target.clone(),
                }),
                None if input.propagation => {} // the VGW propagates it
                None => creates.push(Operation::CreateRoute {
                    table: t.id.clone(),
                    prefix: *p,
                }),
            }
        }
        for (dest, routes) in &by_dest {
            if desired.contains(dest) {
                continue;
            }
            let ours_static = routes
                .iter()
                .any(|r| r.target == ours && r.origin == RouteOrigin::CreateRoute);
            if !ours_static {
                continue;
            }
            if input.prune {
                deletes.push(Operation::DeleteRoute {
                    table: t.id.clone(),
                    prefix: *dest,
                });
            } else {
                stale.push(Stale::TableRoute {
                    table: t.id.clone(),
                    prefix: *dest,
                });
            }
        }
    }

    let mut operations = Vec::new();
    // The VPN connection's routes first, then propagation, then table routes.
    let (vpn_creates, table_creates): (Vec<_>, Vec<_>) = creates
        .into_iter()
        .partition(|o| matches!(o, Operation::CreateVpnConnectionRoute { .. }));
    operations.extend(vpn_creates);
    operations.extend(propagation);
    operations.extend(table_creates);
    operations.extend(deletes);
    operations.extend(vpn_deletes);
    Plan {
        operations,
        conflicts,
        stale,
        vgw_id: input.vgw_id.clone(),
        vpn_connection_id: input.vpn_connection_id.clone(),
    }
}

impl Plan {
    /// True when nothing is to be done (conflicts and stale routes aside:
    /// sync would not change them).
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// `wgctl aws plan`'s exit status: [`EXIT_IN_STEP`] (0) when there is
    /// nothing to do, [`EXIT_CHANGES_PENDING`] (2) otherwise. Conflicts do
    /// not count: sync never changes them, so they would keep a monitor
    /// alarmed forever; they are printed with `!`.
    pub fn exit_code(&self) -> u8 {
        if self.is_empty() {
            EXIT_IN_STEP
        } else {
            EXIT_CHANGES_PENDING
        }
    }

    /// Numbers of (creations, in-place changes, deletions).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for op in &self.operations {
            match op {
                Operation::CreateVpnConnectionRoute { .. } | Operation::CreateRoute { .. } => {
                    c.0 += 1
                }
                Operation::EnableVgwRoutePropagation { .. } => c.1 += 1,
                Operation::DeleteRoute { .. } | Operation::DeleteVpnConnectionRoute { .. } => {
                    c.2 += 1
                }
            }
        }
        c
    }

    /// Terraform-style text: per VPN connection and per route table, `+` for
    /// a route to create, `-` for one to delete, `~` for a table changed in
    /// place (propagation enabled), `!` for a conflict (left alone), `#` for
    /// a stale route kept without `--prune`; then a summary line.
    pub fn render(&self) -> String {
        #[derive(Default)]
        struct Section {
            lines: Vec<(u8, String)>,
        }
        let vpn_key = String::new(); // sorts before every rtb-...
        let mut sections: BTreeMap<String, Section> = BTreeMap::new();
        let vgw = &self.vgw_id;
        for op in &self.operations {
            let (key, order, line) = match op {
                Operation::CreateVpnConnectionRoute { prefix } => {
                    (vpn_key.clone(), 1, format!("  + {prefix}"))
                }
                Operation::DeleteVpnConnectionRoute { prefix } => {
                    (vpn_key.clone(), 3, format!("  - {prefix}"))
                }
                Operation::EnableVgwRoutePropagation { table } => (
                    table.clone(),
                    0,
                    format!("  ~ route propagation from {vgw}: disabled -> enabled"),
                ),
                Operation::CreateRoute { table, prefix } => {
                    (table.clone(), 1, format!("  + {prefix} -> {vgw}"))
                }
                Operation::DeleteRoute { table, prefix } => {
                    (table.clone(), 3, format!("  - {prefix} -> {vgw}"))
                }
            };
            sections.entry(key).or_default().lines.push((order, line));
        }
        for c in &self.conflicts {
            sections.entry(c.table.clone()).or_default().lines.push((
                2,
                format!(
                    "  ! {} -> {} (wanted -> {vgw}; another target: reported, not replaced)",
                    c.prefix, c.target
                ),
            ));
        }
        for s in &self.stale {
            let (key, line) = match s {
                Stale::VpnRoute { prefix } => (
                    vpn_key.clone(),
                    format!("  # {prefix} is no longer desired; kept (--prune removes it)"),
                ),
                Stale::TableRoute { table, prefix } => (
                    table.clone(),
                    format!(
                        "  # {prefix} -> {vgw} is no longer desired; kept (--prune removes it)"
                    ),
                ),
            };
            sections.entry(key).or_default().lines.push((4, line));
        }
        let mut out = String::new();
        for (key, mut section) in sections {
            if key.is_empty() {
                out.push_str(&format!(
                    "VPN connection {} (static routes):\n",
                    self.vpn_connection_id
                ));
            } else {
                out.push_str(&format!("route table {key}:\n"));
            }
            section.lines.sort();
            for (_, line) in section.lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
        if self.is_empty() {
            out.push_str("No changes: AWS routes are in step with the configuration.");
        } else {
            let (add, change, destroy) = self.counts();
            out.push_str(&format!(
                "Plan: {add} to add, {change} to change, {destroy} to destroy."
            ));
        }
        if !self.conflicts.is_empty() {
            out.push_str(&format!(
                " {} conflict{} left alone.",
                self.conflicts.len(),
                if self.conflicts.len() == 1 { "" } else { "s" }
            ));
        }
        out.push('\n');
        out
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VGW: &str = "vgw-0abc";

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn input(desired: &[&str]) -> PlanInput {
        PlanInput {
            desired: desired.iter().map(|s| net(s)).collect(),
            vgw_id: VGW.into(),
            vpn_connection_id: "vpn-0def".into(),
            vpn_routes: vec![],
            route_tables: vec![
                table(
                    "rtb-main",
                    &[("10.0.0.0/16", "local", RouteOrigin::CreateRouteTable)],
                ),
                table(
                    "rtb-private",
                    &[("10.0.0.0/16", "local", RouteOrigin::CreateRouteTable)],
                ),
            ],
            propagation: false,
            prune: false,
        }
    }

    fn route(dest: &str, target: &str, origin: RouteOrigin) -> TableRoute {
        let target =
            if target.starts_with("vgw-") || target.starts_with("igw-") || target == "local" {
                RouteTarget::Gateway(target.into())
            } else {
                RouteTarget::Other(target.into())
            };
        TableRoute {
            destination: net(dest),
            target,
            origin,
        }
    }

    fn table(id: &str, routes: &[(&str, &str, RouteOrigin)]) -> RouteTable {
        RouteTable {
            id: id.into(),
            routes: routes.iter().map(|(d, t, o)| route(d, t, *o)).collect(),
            propagating_vgws: vec![],
        }
    }

    /// What AWS does with the operations (the model the property tests use):
    /// static routes become available at once; a VGW propagating into a
    /// table puts the connection's static routes into it, unless the table
    /// has a static route for that destination.
    fn apply(input: &PlanInput, ops: &[Operation]) -> PlanInput {
        let mut s = input.clone();
        for op in ops {
            match op {
                Operation::CreateVpnConnectionRoute { prefix } => {
                    assert!(
                        !s.vpn_routes
                            .iter()
                            .any(|r| r.prefix == *prefix && r.state.present()),
                        "route {prefix} created twice"
                    );
                    s.vpn_routes.push(VpnRoute {
                        prefix: *prefix,
                        state: VpnRouteState::Available,
                    })
                }
                Operation::DeleteVpnConnectionRoute { prefix } => {
                    let before = s.vpn_routes.len();
                    s.vpn_routes.retain(|r| r.prefix != *prefix);
                    assert!(s.vpn_routes.len() < before, "deleting a missing route");
                }
                Operation::EnableVgwRoutePropagation { table } => {
                    let t = s.route_tables.iter_mut().find(|t| t.id == *table).unwrap();
                    assert!(!t.propagating_vgws.contains(&VGW.to_string()));
                    t.propagating_vgws.push(VGW.into());
                }
                Operation::CreateRoute { table, prefix } => {
                    let t = s.route_tables.iter_mut().find(|t| t.id == *table).unwrap();
                    assert!(
                        !t.routes.iter().any(|r| r.destination == *prefix
                            && r.origin != RouteOrigin::EnableVgwRoutePropagation),
                        "CreateRoute over an existing route (AWS: RouteAlreadyExists)"
                    );
                    t.routes
                        .push(route(&prefix.to_string(), VGW, RouteOrigin::CreateRoute));
                }
                Operation::DeleteRoute { table, prefix } => {
                    let t = s.route_tables.iter_mut().find(|t| t.id == *table).unwrap();
                    let i = t
                        .routes
                        .iter()
                        .position(|r| {
                            r.destination == *prefix && r.origin == RouteOrigin::CreateRoute
                        })
                        .expect("DeleteRoute of a missing static route");
                    let r = t.routes.remove(i);
                    assert_eq!(
                        r.target,
                        RouteTarget::Gateway(VGW.into()),
                        "deleted a foreign route"
                    );
                }
            }
        }
        // Propagation: replace the propagated routes of our VGW.
        let statics: Vec<IpNet> = s
            .vpn_routes
            .iter()
            .filter(|r| r.state.present())
            .map(|r| r.prefix)
            .collect();
        for t in &mut s.route_tables {
            let ours = RouteTarget::Gateway(VGW.into());
            t.routes.retain(|r| {
                !(r.origin == RouteOrigin::EnableVgwRoutePropagation && r.target == ours)
            });
            if t.propagating_vgws.iter().any(|v| v == VGW) {
                for p in &statics {
                    t.routes.push(TableRoute {
                        destination: *p,
                        target: ours.clone(),
                        origin: RouteOrigin::EnableVgwRoutePropagation,
                    });
                }
            }
        }
        s
    }

    #[test]
    fn fresh_connection_static_mode() {
        let i = input(&["172.16.4.0/24", "172.16.60.0/24"]);
        let p = plan(&i);
        assert_eq!(
            p.operations,
            vec![
                Operation::CreateVpnConnectionRoute {
                    prefix: net("172.16.4.0/24")
                },
                Operation::CreateVpnConnectionRoute {
                    prefix: net("172.16.60.0/24")
                },
                Operation::CreateRoute {
                    table: "rtb-main".into(),
                    prefix: net("172.16.4.0/24")
                },
                Operation::CreateRoute {
                    table: "rtb-main".into(),
                    prefix: net("172.16.60.0/24")
                },
                Operation::CreateRoute {
                    table: "rtb-private".into(),
                    prefix: net("172.16.4.0/24")
                },
                Operation::CreateRoute {
                    table: "rtb-private".into(),
                    prefix: net("172.16.60.0/24")
                },
            ]
        );
        assert_eq!(p.exit_code(), EXIT_CHANGES_PENDING);
        assert_eq!(p.counts(), (6, 0, 0));
        let after = apply(&i, &p.operations);
        let again = plan(&after);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(again.exit_code(), EXIT_IN_STEP);
        assert!(again.render().contains("No changes"));
    }

    #[test]
    fn propagation_mode_enables_propagation_only() {
        let mut i = input(&["172.16.4.0/24"]);
        i.propagation = true;
        i.route_tables[1].propagating_vgws.push(VGW.into());
        let p = plan(&i);
        assert_eq!(
            p.operations,
            vec![
                Operation::CreateVpnConnectionRoute {
                    prefix: net("172.16.4.0/24")
                },
                Operation::EnableVgwRoutePropagation {
                    table: "rtb-main".into()
                },
            ]
        );
        assert_eq!(p.counts(), (1, 1, 0));
        let after = apply(&i, &p.operations);
        assert!(plan(&after).is_empty());
        // A static route to our VGW that is still desired is kept in
        // propagation mode (it is not stale).
        let mut j = after.clone();
        j.route_tables[0]
            .routes
            .push(route("172.16.4.0/24", VGW, RouteOrigin::CreateRoute));
        let p = plan(&j);
        assert!(p.is_empty() && p.stale.is_empty(), "{p:?}");
    }

    #[test]
    fn a_propagated_route_satisfies_static_mode() {
        let mut i = input(&["172.16.4.0/24"]);
        i.vpn_routes.push(VpnRoute {
            prefix: net("172.16.4.0/24"),
            state: VpnRouteState::Available,
        });
        i.route_tables[0].propagating_vgws.push(VGW.into());
        i.route_tables[0].routes.push(route(
            "172.16.4.0/24",
            VGW,
            RouteOrigin::EnableVgwRoutePropagation,
        ));
        let p = plan(&i);
        assert_eq!(
            p.operations,
            vec![Operation::CreateRoute {
                table: "rtb-private".into(),
                prefix: net("172.16.4.0/24")
            }]
        );
    }

    #[test]
    fn prune_semantics() {
        let mut i = input(&["172.16.4.0/24"]);
        i.vpn_routes = vec![
            VpnRoute {
                prefix: net("172.16.4.0/24"),
                state: VpnRouteState::Available,
            },
            VpnRoute {
                prefix: net("172.16.9.0/24"),
                state: VpnRouteState::Available,
            },
        ];
        for t in &mut i.route_tables {
            t.routes
                .push(route("172.16.4.0/24", VGW, RouteOrigin::CreateRoute));
            t.routes
                .push(route("172.16.9.0/24", VGW, RouteOrigin::CreateRoute));
        }
        // Without prune: nothing to do, three stale routes reported.
        let p = plan(&i);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.exit_code(), EXIT_IN_STEP);
        assert_eq!(
            p.stale,
            vec![
                Stale::VpnRoute {
                    prefix: net("172.16.9.0/24")
                },
                Stale::TableRoute {
                    table: "rtb-main".into(),
                    prefix: net("172.16.9.0/24")
                },
                Stale::TableRoute {
                    table: "rtb-private".into(),
                    prefix: net("172.16.9.0/24")
                },
            ]
        );
        let text = p.render();
        assert!(
            text.contains(
                "  # 172.16.9.0/24 -> vgw-0abc is no longer desired; kept (--prune removes it)"
            ),
            "{text}"
        );
        // With prune: table routes first, then the connection's route.
        i.prune = true;
        let p = plan(&i);
        assert_eq!(
            p.operations,
            vec![
                Operation::DeleteRoute {
                    table: "rtb-main".into(),
                    prefix: net("172.16.9.0/24")
                },
                Operation::DeleteRoute {
                    table: "rtb-private".into(),
                    prefix: net("172.16.9.0/24")
                },
                Operation::DeleteVpnConnectionRoute {
                    prefix: net("172.16.9.0/24")
                },
            ]
        );
        assert!(p.stale.is_empty());
        assert!(plan(&apply(&i, &p.operations)).is_empty());
    }

    #[test]
    fn foreign_routes_are_never_touched_and_conflicts_reported() {
        let mut i = input(&["172.16.4.0/24", "172.16.60.0/24"]);
        i.prune = true;
        i.route_tables[0].routes.extend([
            // A desired prefix to a peering connection: a conflict.
            route("172.16.60.0/24", "pcx-1111", RouteOrigin::CreateRoute),
            // Undesired routes elsewhere: never ours to delete.
            route("0.0.0.0/0", "igw-2222", RouteOrigin::CreateRoute),
            route("192.168.0.0/16", "tgw-3333", RouteOrigin::CreateRoute),
            // Another VGW's propagated route.
            route(
                "172.31.0.0/16",
                "vgw-other",
                RouteOrigin::EnableVgwRoutePropagation,
            ),
        ]);
        // The local route for a desired prefix is a conflict too.
        i.route_tables[1].routes.push(route(
            "172.16.4.0/24",
            "local",
            RouteOrigin::CreateRouteTable,
        ));
        let p = plan(&i);
        assert_eq!(
            p.conflicts,
            vec![
                Conflict {
                    table: "rtb-main".into(),
                    prefix: net("172.16.60.0/24"),
                    target: RouteTarget::Other("pcx-1111".into()),
                },
                Conflict {
                    table: "rtb-private".into(),
                    prefix: net("172.16.4.0/24"),
                    target: RouteTarget::Gateway("local".into()),
                },
            ]
        );
        for op in &p.operations {
            match op {
                Operation::DeleteRoute { .. } => panic!("deleted a foreign route: {op:?}"),
                Operation::CreateRoute { table, prefix } => {
                    let conflicting = [
                        ("rtb-main", "172.16.60.0/24"),
                        ("rtb-private", "172.16.4.0/24"),
                    ];
                    assert!(
                        !conflicting.contains(&(table.as_str(), &*prefix.to_string())),
                        "replaced a conflicting route: {op:?}"
                    );
                }
                _ => {}
            }
        }
        let text = p.render();
        assert!(text.contains("  ! 172.16.60.0/24 -> pcx-1111 (wanted -> vgw-0abc; another target: reported, not replaced)"), "{text}");
        assert!(
            text.trim_end().ends_with("2 conflicts left alone."),
            "{text}"
        );
        // Conflicts alone do not make changes pending.
        let after = apply(&i, &p.operations);
        let again = plan(&after);
        assert!(again.is_empty());
        assert_eq!(again.exit_code(), EXIT_IN_STEP);
        assert_eq!(again.conflicts.len(), 2);
    }

    #[test]
    fn a_static_route_elsewhere_beats_a_propagated_one_of_ours() {
        let mut i = input(&["172.16.4.0/24"]);
        i.vpn_routes.push(VpnRoute {
            prefix: net("172.16.4.0/24"),
            state: VpnRouteState::Available,
        });
        i.route_tables.truncate(1);
        i.route_tables[0].routes.extend([
            route("172.16.4.0/24", VGW, RouteOrigin::EnableVgwRoutePropagation),
            route("172.16.4.0/24", "eni-1", RouteOrigin::CreateRoute),
        ]);
        let p = plan(&i);
        assert!(p.operations.is_empty());
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].target, RouteTarget::Other("eni-1".into()));
    }

    #[test]
    fn deleted_and_deleting_vpn_routes_count_as_absent() {
        let mut i = input(&["172.16.4.0/24"]);
        i.route_tables.clear();
        i.vpn_routes = vec![
            VpnRoute {
                prefix: net("172.16.4.0/24"),
                state: VpnRouteState::Deleted,
            },
            VpnRoute {
                prefix: net("172.16.5.0/24"),
                state: VpnRouteState::Deleting,
            },
            VpnRoute {
                prefix: net("172.16.6.0/24"),
                state: VpnRouteState::Pending,
            },
        ];
        i.prune = true;
        let p = plan(&i);
        assert_eq!(
            p.operations,
            vec![
                Operation::CreateVpnConnectionRoute {
                    prefix: net("172.16.4.0/24")
                },
                Operation::DeleteVpnConnectionRoute {
                    prefix: net("172.16.6.0/24")
                },
            ]
        );
        assert_eq!(
            VpnRouteState::from_aws("available"),
            VpnRouteState::Available
        );
        assert_eq!(VpnRouteState::from_aws("deleting"), VpnRouteState::Deleting);
        assert_eq!(
            VpnRouteState::from_aws("something-new"),
            VpnRouteState::Available
        );
    }

    #[test]
    fn desired_prefixes_are_normalized() {
        let mut i = input(&["172.16.4.7/24", "172.16.4.0/24"]);
        i.route_tables.clear();
        let p = plan(&i);
        assert_eq!(
            p.operations,
            vec![Operation::CreateVpnConnectionRoute {
                prefix: net("172.16.4.0/24")
            }]
        );
    }

    #[test]
    fn render_names_the_connection_and_tables() {
        let mut i = input(&["172.16.4.0/24"]);
        i.propagation = true;
        i.prune = true;
        i.vpn_routes.push(VpnRoute {
            prefix: net("172.16.9.0/24"),
            state: VpnRouteState::Available,
        });
        i.route_tables[1]
            .routes
            .push(route("172.16.9.0/24", VGW, RouteOrigin::CreateRoute));
        let text = plan(&i).render();
        assert_eq!(
            text,
            "VPN connection vpn-0def (static routes):\n\
             \x20 + 172.16.4.0/24\n\
             \x20 - 172.16.9.0/24\n\
             route table rtb-main:\n\
             \x20 ~ route propagation from vgw-0abc: disabled -> enabled\n\
             route table rtb-private:\n\
             \x20 ~ route propagation from vgw-0abc: disabled -> enabled\n\
             \x20 - 172.16.9.0/24 -> vgw-0abc\n\
             Plan: 1 to add, 2 to change, 2 to destroy.\n"
        );
    }

    // ---- properties ----

    fn arb_prefix() -> impl Strategy<Value = IpNet> {
        // A small universe so that desired and existing prefixes collide often.
        (0u8..6, prop_oneof![Just(16u8), Just(24u8)])
            .prop_map(|(n, len)| net(&format!("172.16.{n}.0/{len}")).trunc())
    }

    fn arb_target() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => Just(VGW.to_string()),
            1 => Just("vgw-other".to_string()),
            1 => Just("pcx-1".to_string()),
            1 => Just("local".to_string()),
            1 => Just("igw-1".to_string()),
        ]
    }

    fn arb_origin() -> impl Strategy<Value = RouteOrigin> {
        prop_oneof![
            4 => Just(RouteOrigin::CreateRoute),
            1 => Just(RouteOrigin::EnableVgwRoutePropagation),
            1 => Just(RouteOrigin::CreateRouteTable),
        ]
    }

    fn arb_table(id: &'static str) -> impl Strategy<Value = RouteTable> {
        (
            proptest::collection::vec((arb_prefix(), arb_target(), arb_origin()), 0..6),
            any::<bool>(),
        )
            .prop_map(move |(routes, propagating)| {
                // One route per (destination, origin kind), as AWS keeps them.
                let mut seen = BTreeSet::new();
                let routes = routes
                    .into_iter()
                    .filter(|(d, _, o)| {
                        seen.insert((*d, *o == RouteOrigin::EnableVgwRoutePropagation))
                    })
                    .map(|(d, t, o)| route(&d.to_string(), &t, o))
                    .collect();
                RouteTable {
                    id: id.into(),
                    routes,
                    propagating_vgws: if propagating {
                        vec![VGW.into()]
                    } else {
                        vec![]
                    },
                }
            })
    }

    fn arb_input() -> impl Strategy<Value = PlanInput> {
        (
            proptest::collection::vec(arb_prefix(), 0..5),
            proptest::collection::btree_set(arb_prefix(), 0..5),
            arb_table("rtb-a"),
            arb_table("rtb-b"),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(desired, vpn, a, b, propagation, prune)| {
                let i = PlanInput {
                    desired,
                    vgw_id: VGW.into(),
                    vpn_connection_id: "vpn-1".into(),
                    vpn_routes: vpn
                        .into_iter()
                        .map(|prefix| VpnRoute {
                            prefix,
                            state: VpnRouteState::Available,
                        })
                        .collect(),
                    route_tables: vec![a, b],
                    propagation,
                    prune,
                };
                // A state AWS could be in: our VGW's propagated routes are
                // exactly the connection's static routes, where it propagates.
                apply(&i, &[])
            })
    }

    fn foreign(s: &PlanInput) -> BTreeSet<(String, IpNet, RouteTarget)> {
        s.route_tables
            .iter()
            .flat_map(|t| {
                t.routes
                    .iter()
                    .filter(|r| r.target != RouteTarget::Gateway(VGW.into()))
                    .map(|r| (t.id.clone(), r.destination, r.target.clone()))
            })
            .collect()
    }

    proptest! {
        #[test]
        fn plan_of_the_applied_plan_is_empty(i in arb_input()) {
            let p = plan(&i);
            let after = apply(&i, &p.operations);
            let again = plan(&after);
            prop_assert!(again.is_empty(), "{:?}\nafter {:?}", again, after);
            prop_assert_eq!(again.exit_code(), EXIT_IN_STEP);
        }

        #[test]
        fn foreign_routes_survive_and_deletions_need_prune(i in arb_input()) {
            let p = plan(&i);
            let after = apply(&i, &p.operations);
            // Every route to another target is still there.
            prop_assert!(foreign(&i).is_subset(&foreign(&after)));
            let desired: BTreeSet<IpNet> = i.desired.iter().map(IpNet::trunc).collect();
            for op in &p.operations {
                match op {
                    Operation::DeleteRoute { prefix, .. } | Operation::DeleteVpnConnectionRoute { prefix } => {
                        prop_assert!(i.prune, "deletion without prune: {:?}", op);
                        prop_assert!(!desired.contains(prefix), "deleted a desired prefix: {:?}", op);
                    }
                    Operation::CreateRoute { .. } => prop_assert!(!i.propagation),
                    _ => {}
                }
            }
            // Without prune, nothing that existed is gone.
            if !i.prune {
                for r in &i.vpn_routes {
                    prop_assert!(after.vpn_routes.contains(r));
                }
            }
            // With prune, no static route of ours to an undesired prefix is left.
            if i.prune {
                prop_assert!(p.stale.is_empty());
                for t in &after.route_tables {
                    for r in &t.routes {
                        if r.target == RouteTarget::Gateway(VGW.into()) && r.origin == RouteOrigin::CreateRoute {
                            prop_assert!(desired.contains(&r.destination), "{:?} left in {}", r, t.id);
                        }
                    }
                }
            }
        }

        #[test]
        fn every_desired_prefix_is_routed_or_in_conflict(i in arb_input()) {
            let p = plan(&i);
            let after = apply(&i, &p.operations);
            let desired: BTreeSet<IpNet> = i.desired.iter().map(IpNet::trunc).collect();
            for d in &desired {
                prop_assert!(after.vpn_routes.iter().any(|r| r.prefix == *d));
                for t in &after.route_tables {
                    let routed = t.routes.iter().any(|r| r.destination == *d && r.target == RouteTarget::Gateway(VGW.into()));
                    let conflict = p.conflicts.iter().any(|c| c.table == t.id && c.prefix == *d);
                    prop_assert!(routed || conflict, "{} not routed in {}", d, t.id);
                }
            }
        }
    }
}
