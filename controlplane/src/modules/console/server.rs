//! The appliance's side of the console: a local UNIX socket and,
//! optionally, a character device (stdin/stdout or a serial port), polled
//! from the control loop without ever blocking it.
//!
//! The socket and its connections are non-blocking and polled once per
//! turn of the loop: accept what is pending, read what arrived, hand out
//! complete lines, write what the answers left. A connection has at most
//! one command in flight (answers may take a few turns: `show
//! connections` waits for the workers), so answers come back in order.
//! The device is read by a small thread that only turns bytes into lines
//! (reads on a terminal cannot be polled without changing its flags for
//! the whole session); the control loop takes the lines from a channel.
//! Another thread writes the answers: a slow serial line or a terminal
//! stopped by flow control (XOFF) can block a write for as long as it
//! likes, and the control loop must not wait (ARP, health checks, load
//! publishing). Answers go to that thread through a bounded queue; when it
//! is full an answer is dropped, counted, logged and noted on the device
//! before the next one that goes out.
//!
//! Memory per socket connection is bounded: input is read only while
//! less than `MAX_INPUT` bytes wait, and no new command line is taken
//! from a connection until the answer to the previous one has been
//! written to it (a client that sends and never reads holds at most one
//! answer).

use super::command::encode;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};

/// Open socket connections at most; more are refused with a message.
const MAX_CONNECTIONS: usize = 16;
/// A command line longer than this is refused and the connection closed.
const MAX_LINE: usize = 4096;
/// Input buffered per connection at most (pipelined lines): reading stops
/// there until commands have been taken.
const MAX_INPUT: usize = 4 * MAX_LINE;
/// Answers (and prompts) waiting for the device's writer thread at most.
const DEVICE_QUEUE: usize = 8;

/// Who sent a command, to send its answer back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnId {
    Socket(u64),
    Device,
}

#[derive(Debug)]
pub struct Request {
    pub conn: ConnId,
    pub line: String,
}

struct Conn {
    id: u64,
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// A command was handed out and not answered yet.
    busy: bool,
    /// The peer closed its side (or an error): close once answered.
    eof: bool,
    /// Close after `outbuf` drains.
    closing: bool,
}

/// The console on a device: lines from a reader thread, answers in plain
/// text (errors prefixed `error: `), a prompt on terminals, written by a
/// writer thread.
struct Device {
    lines: Receiver<String>,
    /// To the writer thread.
    out: SyncSender<String>,
    prompt: bool,
    busy: bool,
    ended: bool,
    /// Answers dropped (queue full) not yet noted on the device.
    dropped: u64,
}

pub struct ConsoleServer {
    listener: Option<UnixListener>,
    /// The socket's path and identity (device, inode): removed at exit
    /// only if it is still ours.
    path: Option<(PathBuf, u64, u64)>,
    conns: Vec<Conn>,
    device: Option<Device>,
    next_id: u64,
}

/// Binds the console socket at `path`: creates its directory, removes a
/// stale socket (one nobody answers on), refuses to take over a live one.
fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!("{} exists and is not a socket; not touching it", path.display()));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{} is in use by another running appliance", path.display()));
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
        log::info!("console: removed the stale socket {}", path.display());
    }
    let l = UnixListener::bind(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
    l.set_nonblocking(true).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(l)
}

/// Gives the socket (mode 0660) to `group`, so its members may use the
/// console; the link itself, never what a path swapped in would point to.
pub fn give_to_group(path: &Path, group: &str) -> Result<(), String> {
    let name = std::ffi::CString::new(group).map_err(|_| format!("group {group:?}: not a name"))?;
    let mut len = 16 * 1024;
    loop {
        let mut buf = vec![0u8; len];
        // SAFETY: a zeroed `group` is a valid out-parameter (null pointers, 0).
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: getgrnam_r writes into `grp` and `buf` (its length given)
        // and sets `found` to &grp or null; only the gid is kept.
        let rc = unsafe { libc::getgrnam_r(name.as_ptr(), &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
        match rc {
            // A group with many members: a bigger buffer, up to 1 MiB.
            libc::ERANGE if len < 1 << 20 => len *= 4,
            0 if found.is_null() => return Err(format!("group {group:?}: no such group")),
            0 => return std::os::unix::fs::lchown(path, None, Some(grp.gr_gid)).map_err(|e| format!("{}: {e}", path.display())),
            e => return Err(format!("group {group:?}: {}", std::io::Error::from_raw_os_error(e))),
        }
    }
}

fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// True when this process is the terminal's foreground job: a background
/// job (`furiwake run ... &`) reading its terminal would be stopped by
/// SIGTTIN, appliance and all.
fn foreground() -> bool {
    // SAFETY: tcgetpgrp and getpgrp only read process state.
    unsafe { libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Where the device console is, from `[console] device`.
fn open_device(spec: Option<&str>) -> Result<Option<Device>, String> {
    let (reader, out, prompt): (Box<dyn Read + Send>, Box<dyn Write + Send>, bool) = match spec {
        Some("none") => return Ok(None),
        None if !(is_tty(0) && foreground()) => return Ok(None),
        None | Some("stdio") => (Box::new(std::io::stdin()), Box::new(std::io::stdout()), is_tty(0)),
        Some(path) => {
            let f = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| format!("console device {path}: {e}"))?;
            let r = f.try_clone().map_err(|e| format!("console device {path}: {e}"))?;
            (Box::new(r), Box::new(f), true)
        }
    };
    let (tx, rx) = mpsc::channel();
    // The writer first: if the reader thread cannot start, the writer
    // ends with its channel.
    let device = Device::start(rx, out, prompt)?;
    std::thread::Builder::new()
        .name("console-device".into())
        .spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("console device thread: {e}"))?;
    Ok(Some(device))
}

impl ConsoleServer {
    /// Opens the socket (`socket` empty: none) and the device console.
    /// Problems are reported and leave that part of the console off; the
    /// appliance runs without it.
    pub fn open(socket: &str, device: Option<&str>) -> ConsoleServer {
        let mut s = ConsoleServer { listener: None, path: None, conns: Vec::new(), device: None, next_id: 1 };
        if !socket.is_empty() {
            let path = PathBuf::from(socket);
            match bind(&path) {
                Ok(l) => {
                    let id = std::fs::metadata(&path).map(|m| (m.dev(), m.ino())).unwrap_or_default();
                    s.path = Some((path.clone(), id.0, id.1));
                    s.listener = Some(l);
                    log::info!("console: listening on {}", path.display());
                }
                Err(e) => log::warn!("console socket off: {e}"),
            }
        }
        match open_device(device) {
            Ok(d) => s.device = d,
            Err(e) => log::warn!("console device off: {e}"),
        }
        if let Some(d) = s.device.as_mut() {
            d.show_prompt();
        }
        s
    }

    pub fn socket_path(&self) -> Option<&Path> {
        self.path.as_ref().map(|p| p.0.as_path())
    }

    /// One turn: accepts, reads and writes what can be without blocking;
    /// returns the command lines that are ready (at most one per
    /// connection that has no command in flight).
    pub fn poll(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        self.accept();
        for c in &mut self.conns {
            c.read();
            c.write();
            // A new command only once the last answer is out: a client
            // that never reads holds one answer at most.
            if !c.busy && !c.closing && c.outbuf.is_empty() {
                if let Some(line) = c.next_line() {
                    c.busy = true;
                    out.push(Request { conn: ConnId::Socket(c.id), line });
                }
                // The refusal of a line too long.
                c.write();
            }
        }
        // A connection whose peer closed its side goes once its commands
        // (lines still buffered included) are answered and written.
        self.conns.retain(|c| !((c.closing || (c.eof && c.inbuf.is_empty())) && !c.busy && c.outbuf.is_empty()));
        if let Some(d) = self.device.as_mut() {
            if !d.busy && !d.ended {
                match d.lines.try_recv() {
                    Ok(line) => {
                        d.busy = true;
                        out.push(Request { conn: ConnId::Device, line });
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => d.ended = true,
                }
            }
        }
        out
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        loop {
            match l.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    let mut c = Conn { id, stream, inbuf: Vec::new(), outbuf: Vec::new(), busy: false, eof: false, closing: false };
                    if self.conns.len() >= MAX_CONNECTIONS {
                        c.outbuf = encode(&Err(format!("too many console sessions ({MAX_CONNECTIONS}); try again later"))).into_bytes();
                        c.closing = true;
                    }
                    self.conns.push(c);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::warn!("console: accept: {e}");
                    break;
                }
            }
        }
    }

    /// Sends the answer to `conn`'s command in flight. `quit` closes a
    /// socket session after its answer.
    pub fn answer(&mut self, conn: ConnId, answer: Result<String, String>, quit: bool) {
        match conn {
            ConnId::Socket(id) => {
                if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
                    c.outbuf.extend_from_slice(encode(&answer).as_bytes());
                    c.busy = false;
                    c.closing |= quit;
                    c.write();
                }
            }
            ConnId::Device => {
                if let Some(d) = self.device.as_mut() {
                    let mut text = match answer {
                        Ok(t) => t,
                        Err(e) => format!("error: {e}"),
                    };
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    d.busy = false;
                    d.send(text);
                }
            }
        }
    }
}

impl Device {
    /// The device console taking typed lines from `lines`; starts the
    /// thread writing to `out`.
    fn start(lines: Receiver<String>, mut out: Box<dyn Write + Send>, prompt: bool) -> Result<Device, String> {
        let (tx, rx) = mpsc::sync_channel::<String>(DEVICE_QUEUE);
        std::thread::Builder::new()
            .name("console-device-out".into())
            .spawn(move || {
                let mut failing = false;
                for text in rx {
                    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            log::warn!("console device: write: {e}");
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(|e| format!("console device output thread: {e}"))?;
        Ok(Device { lines, out: tx, prompt, busy: false, ended: false, dropped: 0 })
    }

    fn show_prompt(&mut self) {
        self.send(String::new());
    }

    /// Queues `text` and the prompt for the writer thread, never waiting:
    /// when the queue is full (the device is not keeping up) the text is
    /// dropped and counted, and the count noted before the next text that
    /// goes out.
    fn send(&mut self, text: String) {
        let mut msg = String::new();
        if self.dropped > 0 {
            let n = self.dropped;
            msg = format!("note: {n} console answer{} dropped: the device is not keeping up\n", if n == 1 { "" } else { "s" });
        }
        msg.push_str(&text);
        if self.prompt {
            msg.push_str("furiwake> ");
        }
        if msg.is_empty() {
            return;
        }
        match self.out.try_send(msg) {
            Ok(()) => self.dropped = 0,
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                log::warn!("console device: not keeping up; an answer was dropped ({} since the last one written)", self.dropped);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped += 1;
                log::warn!("console device: its output thread is gone; an answer was dropped");
            }
        }
    }
}

impl Conn {
    /// Reads what arrived, up to `MAX_INPUT` bytes buffered: beyond, the
    /// rest waits in the socket (and the client's writes block) until
    /// lines have been taken.
    fn read(&mut self) {
        let mut buf = [0u8; 4096];
        while !self.eof && !self.closing && self.inbuf.len() < MAX_INPUT {
            let room = (MAX_INPUT - self.inbuf.len()).min(buf.len());
            match self.stream.read(&mut buf[..room]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.eof = true;
                    break;
                }
            }
        }
    }

    /// The next complete line (a last line without newline counts once
    /// the peer has closed its side). A line longer than `MAX_LINE` bytes
    /// (not counting its `\n` or `\r\n`), complete or not, is refused and
    /// the connection closed.
    fn next_line(&mut self) -> Option<String> {
        let newline = self.inbuf.iter().take(MAX_LINE + 2).position(|b| *b == b'\n');
        let (take, complete) = match newline {
            Some(end) => (end + 1, true),
            None => (self.inbuf.len(), self.eof),
        };
        let whole = &self.inbuf[..take];
        let text = whole.strip_suffix(b"\n").unwrap_or(whole);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.len() > MAX_LINE {
            self.inbuf.clear();
            self.outbuf.extend_from_slice(encode(&Err(format!("command longer than {MAX_LINE} bytes"))).as_bytes());
            self.closing = true;
            return None;
        }
        if !complete || take == 0 {
            return None;
        }
        let line = String::from_utf8_lossy(text).into_owned();
        self.inbuf.drain(..take);
        Some(line)
    }

    fn write(&mut self) {
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(0) => break,
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    // The peer is gone: drop what it will never read.
                    self.outbuf.clear();
                    self.eof = true;
                    self.closing = true;
                    break;
                }
            }
        }
    }
}

impl Drop for ConsoleServer {
    /// Removes the socket, if the path still names the one we bound.
    fn drop(&mut self) {
        self.listener = None;
        if let Some((path, dev, ino)) = &self.path {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests;
