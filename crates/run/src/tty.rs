//! `-t`: the container's stdio is the slave side of a pty; we copy our terminal (in raw mode)
//! to the master and back, and pass window size changes on.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::pty::OpenptFlags;

use crate::Result;
use crate::error::errno;

/// A socket pair over which init sends us the pty master it opened in the container's own
/// devpts (so the terminal is a real `/dev/pts/N` inside, as runc's console socket does).
pub fn console_socket() -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(errno("socketpair for the console"))
}

/// In init, after the pivot: open a pty in the container's devpts, make its slave our stdin,
/// stdout, stderr and controlling terminal, and send the master over `socket`.
pub fn setup_in_container(socket: OwnedFd) -> Result<()> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(errno("opening /dev/ptmx"))?;
    rustix::pty::unlockpt(&master).map_err(errno("unlockpt"))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(errno("ptsname"))?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
        rustix::fs::Mode::empty(),
    )
    .map_err(errno("opening the pty"))?;
    rustix::process::setsid().map_err(errno("setsid"))?;
    rustix::process::ioctl_tiocsctty(&slave).map_err(errno("TIOCSCTTY"))?;
    for target in 0..3 {
        // SAFETY: dup2 of a descriptor we own onto the standard ones.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&slave), target) } < 0 {
            return Err(crate::error::sys("dup2 of the pty")(
                std::io::Error::last_os_error(),
            ));
        }
    }
    send_fd(&socket, Some(master.as_fd())).map_err(errno("sending the pty to img"))
}

/// Send one byte over a unix `socket`, with `fd` when there is one.
pub(crate) fn send_fd(socket: &OwnedFd, fd: Option<BorrowedFd<'_>>) -> rustix::io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
    }
    rustix::net::sendmsg(
        socket,
        &[std::io::IoSlice::new(b"m")],
        &mut control,
        rustix::net::SendFlags::empty(),
    )?;
    Ok(())
}

/// In the parent: receive the pty master init sent.
pub fn receive_master(socket: &OwnedFd) -> Result<OwnedFd> {
    receive_fd(socket).map_err(|e| match e {
        crate::Error::Config(_) => crate::Error::Config("the container sent no terminal".into()),
        e => e,
    })
}

/// Receive the descriptor [`send_fd`] sent (an error when it sent none).
pub(crate) fn receive_fd(socket: &OwnedFd) -> Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(
        socket,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(errno("receiving a descriptor"))?;
    for msg in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(crate::Error::Config("no descriptor came".into()))
}

/// Our terminal's size (rows, columns), when stdin is one.
pub fn window_size() -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(std::io::stdin())
        .ok()
        .map(|w| (w.ws_row, w.ws_col))
}

/// Give the pty our terminal's size.
pub fn resize(master: &impl AsFd) {
    if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, size);
    }
}

/// Our terminal in raw mode until dropped.
pub struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    /// Put stdin's terminal in raw mode (nothing happens if stdin is not a terminal).
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            raw.make_raw();
            let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

/// Copy stdin to the master (on a thread of its own) and the master to stdout; returns the
/// thread copying the output, which ends when the container's side is closed.
pub fn proxy(master: OwnedFd) -> Result<std::thread::JoinHandle<()>> {
    let mut input = File::from(master.try_clone().map_err(|e| crate::Error::Sys {
        what: "pty".into(),
        cause: e,
    })?);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || input.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut output = File::from(master);
    Ok(std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut stdout = std::io::stdout();
        // Reading fails with EIO once the last slave descriptor is closed.
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = stdout.flush();
        }
    }))
}
