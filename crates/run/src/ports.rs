//! `-p HOST:CTR`: the container keeps its private network namespace; we listen on the host
//! and, for each connection, dial 127.0.0.1:CTR from a thread that has joined the container's
//! network namespace, then copy bytes both ways. No iptables, no bridge, no other address.

use std::ffi::OsStr;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;

use crate::spawn::Stdio;

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

/// The listeners [`forward`] serves; dropping it closes them (their threads, the dialling
/// thread and a rootless container's `__dial` helper then end), so a container started
/// again (a restart policy) can listen on the same ports.
#[derive(Debug, Default)]
pub struct Forwarding {
    listeners: Vec<TcpListener>,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for l in &self.listeners {
            // A listening socket shut down wakes its blocked accept with an error.
            let _ = rustix::net::shutdown(l, rustix::net::Shutdown::Both);
        }
    }
}

/// Serve the listeners for the container whose PID 1 is `pid`, on background threads, until
/// the returned [`Forwarding`] is dropped. As root one thread joins the container's network
/// namespace to dial; without root (a rootless container, whose namespace only its user
/// namespace's root may join) `exe __dial` does, started inside both, and hands each
/// connection back over a socket.
pub fn forward(pid: u32, listeners: Vec<(Port, TcpListener)>, exe: &Path) -> Result<Forwarding> {
    let mut forwarding = Forwarding::default();
    if listeners.is_empty() {
        return Ok(forwarding);
    }
    let ns = |kind: &str| {
        let path = format!("/proc/{pid}/ns/{kind}");
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(sys(path))
    };
    let net = ns("net")?;
    // One thread (with the helper, as the case may be) makes the inside connections.
    let (dial_tx, dial_rx) = mpsc::channel::<(u16, mpsc::Sender<io::Result<TcpStream>>)>();
    if crate::userns::is_root() {
        std::thread::spawn(move || {
            if let Err(e) = rustix::thread::move_into_link_name_space(
                net.as_fd(),
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
    } else {
        let (ours, theirs) = crate::tty::console_socket()?;
        let mut helper = crate::spawn::spawn(crate::spawn::Spawn {
            exe,
            args: &[OsStr::new("__dial")],
            stdio: [Stdio::Null, Stdio::Null, Stdio::Inherit],
            fds: vec![(theirs, DIAL_FD)],
            namespaces: 0,
            maps: None,
            join: vec![ns("user")?, net],
        })?;
        std::thread::spawn(move || {
            for (port, reply) in dial_rx {
                let _ = reply.send(dial_through(&ours, port));
            }
            drop(ours);
            let _ = helper.wait();
        });
    }
    for (port, listener) in listeners {
        forwarding
            .listeners
            .push(listener.try_clone().map_err(sys("listener"))?);
        let closed = forwarding.closed.clone();
        let dial = dial_tx.clone();
        std::thread::spawn(move || {
            for outside in listener.incoming() {
                let outside = match outside {
                    Ok(s) => s,
                    Err(_) if closed.load(std::sync::atomic::Ordering::SeqCst) => return,
                    // EMFILE and the like: try again, without spinning.
                    Err(_) => {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        continue;
                    }
                };
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
    Ok(forwarding)
}

/// Where `img __dial` finds its socket.
const DIAL_FD: i32 = 3;

/// Ask the helper for a connection to the container's 127.0.0.1:`port`.
fn dial_through(socket: &OwnedFd, port: u16) -> io::Result<TcpStream> {
    rustix::io::write(socket, &port.to_be_bytes())?;
    let fd = crate::tty::receive_fd(socket).map_err(io::Error::other)?;
    Ok(TcpStream::from(fd))
}

/// `img __dial`, inside a rootless container's user and network namespaces: for each port
/// asked on fd 3, connect to 127.0.0.1:PORT and send the connection back (nothing when it
/// fails: the asker sees the byte alone). Ends when the asker closes the socket.
pub fn dial_main() -> ! {
    // A terminal's ^C or ^\ is the container's and img's business: the helper lives until the
    // supervisor closes its socket.
    // SAFETY: setting two signals' dispositions to ignored.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    // SAFETY: fd 3 was put there for us by `forward`.
    let socket = unsafe { OwnedFd::from_raw_fd(DIAL_FD) };
    loop {
        let mut port = [0u8; 2];
        match rustix::io::read(&socket, &mut port) {
            Ok(2) => {}
            _ => std::process::exit(0),
        }
        let port = u16::from_be_bytes(port);
        let connected = TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(OwnedFd::from);
        if crate::tty::send_fd(&socket, connected.as_ref().map(|c| c.as_fd())).is_err() {
            std::process::exit(0);
        }
    }
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
