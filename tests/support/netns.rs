//! A network namespace with a veth pair, for backends the Kubernetes API will accept as endpoints
//! (EndpointSlice validation refuses loopback addresses). Traffic only flows between the pair's two ends.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use tokio::sync::oneshot;

pub struct NetNs {
    name: String,
    host_if: String,
    /// The namespace's end of the pair: backends bind here.
    pub ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetNs {
    /// `None` (test skipped) outside CI when namespaces cannot be made here (not root, no `ip`).
    pub fn create() -> Option<Self> {
        let id = std::process::id();
        let name = format!("cgtest{id}");
        let host_if = format!("cgh{}", id % 100_000);
        let ns_if = format!("cgn{}", id % 100_000);
        // A private /30 of our own, varied by process so parallel runs do not clash.
        let subnet = (id % 250) as u8 + 1;
        let host_ip = format!("10.213.{subnet}.1");
        let ns_ip = Ipv4Addr::new(10, 213, subnet, 2);
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &name])?;
            ip(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ])?;
            ip(&["link", "set", &ns_if, "netns", &name])?;
            ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
            ip(&["link", "set", &host_if, "up"])?;
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ns_ip}/30"),
                "dev",
                &ns_if,
            ])?;
            ip(&["-n", &name, "link", "set", &ns_if, "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])
        };
        let result = setup();
        let ns = NetNs {
            name,
            host_if,
            ip: ns_ip,
        };
        match result {
            Ok(()) => Some(ns),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("CI is set but a network namespace cannot be made: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot make a network namespace ({e}); run as root");
                None
            }
        }
    }

    /// Start the echo backend inside the namespace, on its address.
    pub fn backend(&self, label: &str) -> NsBackend {
        let path = format!("/var/run/netns/{}", self.name);
        let addr = SocketAddr::from((self.ip, 0));
        let label = label.to_owned();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            // setns changes only this thread's namespace; the runtime below is this thread's alone.
            let file = std::fs::File::open(&path).expect("netns file");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let backend = super::backend::start_on(&label, addr).await;
                ready_tx.send(backend.addr).expect("report address");
                let _ = stopped.await;
                drop(backend);
            });
        });
        let addr = ready_rx.recv().expect("backend in namespace started");
        NsBackend { addr, _stop: stop }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

pub struct NsBackend {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}
