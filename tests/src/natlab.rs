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
                })
                .collect(),
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
        for (i, ns) in lab.public.clone().iter().enumerate() {
            ip(&["netns", "add", ns]);
            plug(ns, "wan0", format!("{}/24", lab.public_ip(i)));
        }
        for i in 0..lab.homes.len() {
            let (router, host) = (lab.homes[i].router.clone(), lab.homes[i].host.clone());
            ip(&["netns", "add", &router]);
            ip(&["netns", "add", &host]);
            plug(&router, "wan0", format!("{}/24", lab.router_ip(i)));
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
                Nat::Easy => "masquerade",
                Nat::Hard => "masquerade random",
            };
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
    iifname \"wan0\" drop
  }}
  chain wanin {{
    type filter hook input priority 0; policy accept;
    iifname \"wan0\" ct state new drop
  }}
}}
"
            );
            let file = std::env::temp_dir().join(format!("{router}.nft"));
            std::fs::write(&file, rules).expect("writing the router's rules");
            exec(&router, &["nft", "-f", file.to_str().unwrap_or_default()]);
            let _ = std::fs::remove_file(&file);
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
        format!("198.18.{}.{}", self.tag, 100 + i)
    }

    /// Home `i`'s host's address on its LAN.
    pub fn home_ip(&self, i: usize) -> String {
        format!("10.{}.{i}.2", 150 + u32::from(self.tag))
    }

    /// Drops every mapping home `i`'s router holds (`conntrack -F`, as a
    /// router that reboots or times them out).
    pub fn flush_mappings(&self, i: usize) {
        exec(&self.homes[i].router, &["conntrack", "-F"]);
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        let homes = self.homes.iter().flat_map(|h| [&h.host, &h.router]);
        for ns in homes.chain(&self.public).chain([&self.wan]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
