//! `run -dt` and `img attach`: a detached container with a terminal. Its supervisor holds the
//! pty master, appends what the container writes to its log, and serves `DIR/attach.sock`:
//! each client gets the output from the moment it connects and sends input and window sizes
//! back, framed ([`Frame`]). The client side ([`Client`]) is what `img attach` drives.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::Result;
use crate::error::sys;

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// The most input one frame carries (what a client reads from its terminal at once is less).
const FRAME_MAX: usize = 64 * 1024;

/// Output chunks queued for one client; a client that falls this far behind is dropped
/// rather than let it stall the terminal (and so the container) for everyone.
const QUEUE: usize = 256;

/// What a client sends: input for the terminal, or its window's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes typed.
    Input(Vec<u8>),
    /// Rows and columns.
    Size(u16, u16),
}

impl Frame {
    /// `i` + u32 length + bytes, or `w` + rows + columns (big-endian u16s).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Input(bytes) => {
                let mut out = vec![b'i'];
                out.extend((bytes.len() as u32).to_be_bytes());
                out.extend(bytes);
                out
            }
            Frame::Size(rows, cols) => {
                let mut out = vec![b'w'];
                out.extend(rows.to_be_bytes());
                out.extend(cols.to_be_bytes());
                out
            }
        }
    }

    /// The next frame from `r`; `None` at its end or on a frame that makes no sense.
    pub fn read(r: &mut impl Read) -> Option<Frame> {
        let mut kind = [0u8; 1];
        r.read_exact(&mut kind).ok()?;
        match kind[0] {
            b'i' => {
                let mut len = [0u8; 4];
                r.read_exact(&mut len).ok()?;
                let len = u32::from_be_bytes(len) as usize;
                if len > FRAME_MAX {
                    return None;
                }
                let mut bytes = vec![0; len];
                r.read_exact(&mut bytes).ok()?;
                Some(Frame::Input(bytes))
            }
            b'w' => {
                let mut size = [0u8; 4];
                r.read_exact(&mut size).ok()?;
                Some(Frame::Size(
                    u16::from_be_bytes([size[0], size[1]]),
                    u16::from_be_bytes([size[2], size[3]]),
                ))
            }
            _ => None,
        }
    }
}

/// In the supervisor: copy the terminal's output to `log` and to every client of
/// `dir/attach.sock` until the container's side closes; clients' input and sizes go to the
/// terminal. Returns the copying thread (it ends with the container's output).
pub fn serve(master: OwnedFd, log: &Path, dir: &Path) -> Result<JoinHandle<()>> {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(sys(log.display()))?;
    let path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let (_dir, short) = short_path(dir)?;
    let listener = UnixListener::bind(&short).map_err(sys(path.display()))?;
    // Only our user (the container's directory already keeps others out).
    std::fs::set_permissions(&short, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(sys(path.display()))?;
    let clients: Arc<Mutex<Vec<std::sync::mpsc::SyncSender<Vec<u8>>>>> = Arc::default();
    let input = std::fs::File::from(master.try_clone().map_err(sys("pty"))?);
    let input = Arc::new(Mutex::new(input));
    {
        let clients = clients.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else {
                    // EMFILE and the like: try again, without spinning.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                };
                let (Ok(mut reader), Ok(mut list)) = (stream.try_clone(), clients.lock()) else {
                    continue;
                };
                // Each client is written by a thread of its own, from a bounded queue.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
                list.push(tx);
                drop(list);
                std::thread::spawn(move || {
                    for chunk in rx {
                        if stream.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                });
                let input = input.clone();
                std::thread::spawn(move || {
                    while let Some(frame) = Frame::read(&mut reader) {
                        let Ok(mut terminal) = input.lock() else {
                            return;
                        };
                        match frame {
                            Frame::Input(bytes) => {
                                let _ = terminal.write_all(&bytes);
                            }
                            Frame::Size(rows, cols) => {
                                let size = rustix::termios::Winsize {
                                    ws_row: rows,
                                    ws_col: cols,
                                    ws_xpixel: 0,
                                    ws_ypixel: 0,
                                };
                                let _ = rustix::termios::tcsetwinsize(&*terminal, size);
                            }
                        }
                    }
                });
            }
        });
    }
    let mut output = std::fs::File::from(master);
    let socket = path.clone();
    Ok(std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        // EIO once every process holding the terminal's other side has gone.
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = log.write_all(&buf[..n]);
            if let Ok(mut list) = clients.lock() {
                list.retain(|c| c.try_send(buf[..n].to_vec()).is_ok());
            }
        }
        let _ = std::fs::remove_file(&socket);
        // The writers end once their queues are empty and closed.
        if let Ok(mut list) = clients.lock() {
            list.clear();
        }
    }))
}

/// The socket's path through a descriptor of `dir` (`/proc/self/fd/N/attach.sock`, held
/// open by the returned file): a unix socket's path may not be longer than 107 bytes, which
/// a store under a home directory with a 64-hex container id is.
fn short_path(dir: &Path) -> Result<(std::fs::File, PathBuf)> {
    let file = std::fs::File::open(dir).map_err(sys(dir.display()))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    Ok((file, PathBuf::from(format!("/proc/self/fd/{fd}/{SOCKET}"))))
}

/// docker's detach keys: ctrl-p then ctrl-q.
pub const DETACH: [u8; 2] = [0x10, 0x11];

/// What a client's input becomes: frames to send, and whether the detach keys came.
#[derive(Debug, Default)]
pub struct Keys {
    /// A ctrl-p held back: the start of the detach keys, or a ctrl-p to send after all.
    pending: bool,
}

impl Keys {
    /// The bytes of `typed` to send, and whether the user detached (what follows the keys is
    /// not sent).
    pub fn feed(&mut self, typed: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(typed.len() + 1);
        for &b in typed {
            if self.pending {
                self.pending = false;
                if b == DETACH[1] {
                    return (out, true);
                }
                out.push(DETACH[0]);
            }
            if b == DETACH[0] {
                self.pending = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// The client end of a container's attach socket.
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connect to the container in `dir` (it must be running with a terminal).
    pub fn connect(dir: &Path) -> Result<Client> {
        let path: PathBuf = dir.join(SOCKET);
        let (_dir, short) = short_path(dir)?;
        let stream = UnixStream::connect(&short).map_err(sys(path.display()))?;
        Ok(Client { stream })
    }

    /// Send `frame`.
    pub fn send(&self, frame: &Frame) -> std::io::Result<()> {
        (&self.stream).write_all(&frame.encode())
    }

    /// The container's output, to read until its end.
    pub fn output(&self) -> std::io::Result<UnixStream> {
        self.stream.try_clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for frame in [Frame::Input(b"ls\r".to_vec()), Frame::Size(50, 132)] {
            let bytes = frame.encode();
            assert_eq!(Frame::read(&mut &bytes[..]), Some(frame));
        }
        assert_eq!(Frame::read(&mut &b"x"[..]), None);
        assert_eq!(Frame::read(&mut &b"i\xff\xff\xff\xff"[..]), None);
    }

    #[test]
    fn ctrl_p_ctrl_q_detaches_and_a_lone_ctrl_p_is_sent() {
        let mut keys = Keys::default();
        assert_eq!(keys.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(keys.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(keys.feed(b"x\x10\x11rest"), (b"x".to_vec(), true));
        let mut keys = Keys::default();
        assert_eq!(keys.feed(b"\x10\x10\x11"), (b"\x10".to_vec(), true));
    }
}
