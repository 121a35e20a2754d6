//! A NAT lab in network namespaces (`../shared/NATLAB.md`): public hosts
//! on a WAN bridge, and homes, each a host behind its own router that
//! masquerades onto the WAN and firewalls new inbound packets as home
//! routers do ("easy": endpoint-independent mapping, address-and-port-
//! dependent filtering), or maps each destination to a random port
//! ("hard": a symmetric NAT).
//!
//! Addresses: the WAN is 198.18.T.0/24 (T = the lab's tag): public host
//! `i` is .(i+1), home `i`'s router .(100+i). Home `i`'s LAN is
//! 10.(150+T).(i).0/24: its router .1, its host .2.

use std::process::Command;

use crate::require_root;

/// How a home's router maps and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Endpoint-independent mapping (the port is kept), inbound packets
    /// only from where the host sent to.
    Easy,
    /// A new random port for every destination (`masquerade random`).
    Hard,
    /// Hard, but the router is an Internet Gateway Device (Debian's
    /// `miniupnpd-nftables`, UPnP IGD and NAT-PMP): the host may ask it to
    /// forward a port. (Its WAN address is in 11.T.0.0/24: miniupnpd
    /// refuses to map on a reserved one such as 198.18/15.)
    Mapped,
    /// Mapped, but the router speaks NAT-PMP only (UPnP off).
    Pmp,
    /// Two easy NATs in a row: the home router behind a carrier-grade NAT
    /// (its own namespace, `cgn`) that masquerades and firewalls the same
    /// way, the home router's WAN side in 100.64.i.0/24.
    Double,
}

/// A host behind its router.
#[derive(Debug)]
pub struct Home {
    /// The router's namespace.
    pub router: String,
    /// The host's namespace.
    pub host: String,
    /// How the router maps.
    pub nat: Nat,
    /// The carrier-grade NAT's namespace, in front of the router
    /// ([`Nat::Double`]).
    pub cgn: Option<String>,
}

impl Home {
    /// Whether the router forwards ports on request (UPnP IGD, NAT-PMP).
    pub fn maps(&self) -> bool {
        matches!(self.nat, Nat::Mapped | Nat::Pmp)
    }
}

/// The lab; every namespace is removed on drop.
#[derive(Debug)]
pub struct NatLab {
    tag: u8,
    wan: String,
    /// Public hosts' namespaces, on the WAN.
    pub public: Vec<String>,
    /// The homes.
    pub homes: Vec<Home>,
    /// The routers' UPnP daemons.
    igds: Vec<std::process::Child>,
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// Runs `args` in namespace `ns`.
fn exec(ns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    ip(&all);
}

/// A home router's rules in namespace `ns`: `masquerade` out of `wan0`,
/// and new packets in from `wan0` dropped (unless `forwarded` accepts
/// them), as home routers do.
fn apply_rules(ns: &str, masquerade: &str, forwarded: &str) {
    let rules = format!(
        "table ip nat {{
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan0\" {masquerade}
  }}
}}
table ip filter {{
  chain wanfwd {{
    type filter hook forward priority 0; policy accept;
    iifname \"wan0\" ct state established,related accept
    {forwarded}
    iifname \"wan0\" drop
  }}
  chain wanin {{
    type filter hook input priority 0; policy accept;
    iifname \"wan0\" ct state new drop
  }}
}}
"
    );
    let file = std::env::temp_dir().join(format!("{ns}.nft"));
    std::fs::write(&file, rules).expect("writing the router's rules");
    exec(ns, &["nft", "-f", file.to_str().unwrap_or_default()]);
    let _ = std::fs::remove_file(&file);
}

impl NatLab {
    /// `public` public hosts and one home per entry of `homes`. `tag`
    /// keeps concurrent labs apart (names and subnets).
    pub fn new(tag: u8, public: usize, homes: &[Nat]) -> Self {
        require_root();
        let pid = std::process::id();
        let name = |what: &str| format!("p2pfs-{what}-{pid}-{tag}");
        let mut lab = Self {
            tag,
            wan: name("wan"),
            public: (0..public).map(|i| name(&format!("pub{i}"))).collect(),
            homes: homes
                .iter()
                .enumerate()
                .map(|(i, nat)| Home {
                    router: name(&format!("r{i}")),
                    host: name(&format!("h{i}")),
                    nat: *nat,
                    cgn: (*nat == Nat::Double).then(|| name(&format!("c{i}"))),
                })
                .collect(),
            igds: Vec::new(),
        };
        let wan = lab.wan.clone();
        ip(&["netns", "add", &wan]);
        ip(&["-n", &wan, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &wan, "link", "set", "br0", "up"]);
        let mut port = 0;
        let mut plug = |ns: &str, dev: &str, addr: String| {
            let outer = format!("p{port}");
            port += 1;
            ip(&[
                "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", &outer, "netns", &wan,
            ]);
            ip(&["-n", &wan, "link", "set", &outer, "master", "br0"]);
            ip(&["-n", &wan, "link", "set", &outer, "up"]);
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        };
        let (reserved, open) = (format!("198.18.{tag}.0/24"), format!("11.{tag}.0.0/24"));
        for (i, ns) in lab.public.clone().iter().enumerate() {
            ip(&["netns", "add", ns]);
            plug(ns, "wan0", format!("{}/24", lab.public_ip(i)));
            ip(&["-n", ns, "route", "add", &open, "dev", "wan0"]);
        }
        for i in 0..lab.homes.len() {
            let (router, host) = (lab.homes[i].router.clone(), lab.homes[i].host.clone());
            ip(&["netns", "add", &router]);
            ip(&["netns", "add", &host]);
            // The namespace on the WAN: the router, or the carrier's NAT
            // in front of it.
            let edge = lab.homes[i].cgn.clone().unwrap_or_else(|| router.clone());
            if edge != router {
                ip(&["netns", "add", &edge]);
            }
            plug(&edge, "wan0", format!("{}/24", lab.router_ip(i)));
            let other = if lab.homes[i].maps() {
                &reserved
            } else {
                &open
            };
            ip(&["-n", &edge, "route", "add", other, "dev", "wan0"]);
            if edge != router {
                let carrier = format!("100.64.{i}");
                ip(&[
                    "-n", &router, "link", "add", "wan0", "type", "veth", "peer", "name", "lan0",
                    "netns", &edge,
                ]);
                ip(&[
                    "-n",
                    &edge,
                    "addr",
                    "add",
                    &format!("{carrier}.1/24"),
                    "dev",
                    "lan0",
                ]);
                ip(&["-n", &edge, "link", "set", "lan0", "up"]);
                ip(&["-n", &edge, "link", "set", "lo", "up"]);
                ip(&[
                    "-n",
                    &router,
                    "addr",
                    "add",
                    &format!("{carrier}.2/24"),
                    "dev",
                    "wan0",
                ]);
                ip(&["-n", &router, "link", "set", "wan0", "up"]);
                ip(&["-n", &router, "link", "set", "lo", "up"]);
                ip(&[
                    "-n",
                    &router,
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("{carrier}.1"),
                ]);
                // The carrier routes the home's LAN to the home router.
                let home_lan = format!("10.{}.{i}.0/24", 150 + u32::from(tag));
                ip(&[
                    "-n",
                    &edge,
                    "route",
                    "add",
                    &home_lan,
                    "via",
                    &format!("{carrier}.2"),
                ]);
                exec(&edge, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
                apply_rules(&edge, "masquerade", "");
            }
            let lan = format!("10.{}.{i}", 150 + u32::from(tag));
            ip(&[
                "-n", &host, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0",
                "netns", &router,
            ]);
            ip(&[
                "-n",
                &router,
                "addr",
                "add",
                &format!("{lan}.1/24"),
                "dev",
                "lan0",
            ]);
            ip(&["-n", &router, "link", "set", "lan0", "up"]);
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{lan}.2/24"),
                "dev",
                "lan0",
            ]);
            ip(&["-n", &host, "link", "set", "lan0", "up"]);
            ip(&["-n", &host, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &host,
                "route",
                "add",
                "default",
                "via",
                &format!("{lan}.1"),
            ]);
            exec(&router, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
            let masquerade = match lab.homes[i].nat {
                Nat::Easy | Nat::Double => "masquerade",
                Nat::Hard | Nat::Mapped | Nat::Pmp => "masquerade random",
            };
            // Forwarded ports (UPnP) pass the firewall, as on a real router.
            let forwarded = if lab.homes[i].maps() {
                "iifname \"wan0\" ct status dnat accept"
            } else {
                ""
            };
            apply_rules(&router, masquerade, forwarded);
            if lab.homes[i].maps() {
                let igd = lab.start_igd(i);
                lab.igds.push(igd);
            }
        }
        lab.tag = tag;
        lab
    }

    /// Public host `i`'s address.
    pub fn public_ip(&self, i: usize) -> String {
        format!("198.18.{}.{}", self.tag, i + 1)
    }

    /// Home `i`'s router's address on the WAN (its host's public face).
    pub fn router_ip(&self, i: usize) -> String {
        match self.homes[i].nat {
            Nat::Mapped | Nat::Pmp => format!("11.{}.0.{}", self.tag, 100 + i),
            Nat::Easy | Nat::Hard | Nat::Double => format!("198.18.{}.{}", self.tag, 100 + i),
        }
    }

    /// Starts miniupnpd on home `i`'s router: UPnP IGD and NAT-PMP on the
    /// LAN side, mappings made in its own nftables table.
    fn start_igd(&self, i: usize) -> std::process::Child {
        let router = &self.homes[i].router;
        let tables = "table inet upnp {
  chain forward { type filter hook forward priority -10; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
  chain postrouting_miniupnpd { }
}
";
        let dir = std::env::temp_dir().join(format!("{router}-igd"));
        std::fs::create_dir_all(&dir).expect("the IGD's directory");
        let nft = dir.join("tables.nft");
        std::fs::write(&nft, tables).expect("writing the IGD's tables");
        exec(router, &["nft", "-f", nft.to_str().unwrap_or_default()]);
        let conf = format!(
            "ext_ifname=wan0
listening_ip=lan0
enable_upnp={}
enable_natpmp=yes
secure_mode=yes
system_uptime=yes
uuid=00000000-0000-0000-0000-0000000000{:02x}
upnp_table_name=upnp
upnp_nat_table_name=upnp
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
lease_file={}
allow 1024-65535 10.0.0.0/8 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
",
            if self.homes[i].nat == Nat::Pmp {
                "no"
            } else {
                "yes"
            },
            i,
            dir.join("leases").display()
        );
        let conf_file = dir.join("miniupnpd.conf");
        std::fs::write(&conf_file, conf).expect("writing the IGD's configuration");
        let log = std::fs::File::create(dir.join("log")).expect("the IGD's log");
        Command::new("ip")
            .args(["netns", "exec", router, "miniupnpd", "-d", "-f"])
            .arg(&conf_file)
            .arg("-P")
            .arg(dir.join("pid"))
            .stdout(log.try_clone().expect("the IGD's log"))
            .stderr(log)
            .spawn()
            .expect("starting miniupnpd (apt-get install miniupnpd-nftables)")
    }

    /// Home `i`'s host's address on its LAN.
    pub fn home_ip(&self, i: usize) -> String {
        format!("10.{}.{i}.2", 150 + u32::from(self.tag))
    }

    /// Limits what namespace `ns` (a public host or a router) sends on
    /// the WAN to `rate` (tbf, `40mbit`).
    pub fn shape(&self, ns: &str, rate: &str) {
        exec(
            ns,
            &[
                "tc", "qdisc", "replace", "dev", "wan0", "root", "tbf", "rate", rate, "burst",
                "64kb", "latency", "100ms",
            ],
        );
    }

    /// Drops every mapping home `i`'s router holds (`conntrack -F`, as a
    /// router that reboots or times them out).
    pub fn flush_mappings(&self, i: usize) {
        exec(&self.homes[i].router, &["conntrack", "-F"]);
        if let Some(cgn) = &self.homes[i].cgn {
            exec(cgn, &["conntrack", "-F"]);
        }
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        for igd in &mut self.igds {
            let _ = igd.kill();
            let _ = igd.wait();
        }
        for h in &self.homes {
            let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("{}-igd", h.router)));
        }
        let homes = self
            .homes
            .iter()
            .flat_map(|h| [Some(&h.host), Some(&h.router), h.cgn.as_ref()])
            .flatten();
        for ns in homes.chain(&self.public).chain([&self.wan]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
