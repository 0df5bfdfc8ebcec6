//! `-p HOST:CTR`: the container keeps its private network namespace; we listen on the host
//! and, for each connection, dial 127.0.0.1:CTR from a thread that has joined the container's
//! network namespace, then copy bytes both ways. No iptables, no bridge, no other address.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;

use crate::Result;
use crate::error::sys;
use crate::state::Port;

/// Bind the host side of every mapping now (so a busy port fails the run early). The
/// default address is every one, IPv4 and IPv6 (one dual-stack socket on `[::]`, or
/// `0.0.0.0` where IPv6 is off); a host port of 0 is chosen by the kernel, and the returned
/// ports carry the ones chosen.
pub fn listen(ports: &[Port]) -> Result<Vec<(Port, TcpListener)>> {
    ports
        .iter()
        .map(|p| {
            let shown = p.host_addresses().join(" and ");
            let context = || format!("listening on {shown} port {}", p.host_port);
            let listener = if p.host_ip.is_empty() {
                TcpListener::bind((Ipv6Addr::UNSPECIFIED, p.host_port)).or_else(|e| {
                    match e.raw_os_error() {
                        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL) => {
                            TcpListener::bind((Ipv4Addr::UNSPECIFIED, p.host_port))
                        }
                        _ => Err(e),
                    }
                })
            } else {
                TcpListener::bind((p.host_ip.as_str(), p.host_port))
            }
            .map_err(sys(context()))?;
            let port = listener.local_addr().map_err(sys(context()))?.port();
            Ok((
                Port {
                    host_port: port,
                    ..p.clone()
                },
                listener,
            ))
        })
        .collect()
}

/// Serve the listeners for the container whose PID 1 is `pid`, on background threads.
pub fn forward(pid: u32, listeners: Vec<(Port, TcpListener)>) -> Result<()> {
    if listeners.is_empty() {
        return Ok(());
    }
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(sys(format!("/proc/{pid}/ns/net")))?;
    // One thread lives in the container's namespace and makes the inside connections.
    let (dial_tx, dial_rx) = mpsc::channel::<(u16, mpsc::Sender<io::Result<TcpStream>>)>();
    std::thread::spawn(move || {
        if let Err(e) = rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        ) {
            for (_, reply) in dial_rx {
                let _ = reply.send(Err(e.into()));
            }
            return;
        }
        for (port, reply) in dial_rx {
            let _ = reply.send(TcpStream::connect(("127.0.0.1", port)));
        }
    });
    for (port, listener) in listeners {
        let dial = dial_tx.clone();
        std::thread::spawn(move || {
            for outside in listener.incoming().flatten() {
                let (tx, rx) = mpsc::channel();
                if dial.send((port.container_port, tx)).is_err() {
                    return;
                }
                match rx.recv() {
                    Ok(Ok(inside)) => pipe(outside, inside),
                    _ => {
                        let _ = outside.shutdown(Shutdown::Both);
                    }
                }
            }
        });
    }
    Ok(())
}

/// Copy both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    std::thread::spawn(move || copy(a, b2));
    std::thread::spawn(move || copy(b, a2));
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
