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

use super::command::encode;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};

/// Open socket connections at most; more are refused with a message.
const MAX_CONNECTIONS: usize = 16;
/// A command line longer than this is refused and the connection closed.
const MAX_LINE: usize = 4096;

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

/// The console on a device: lines from a reader thread, answers written
/// in plain text (errors prefixed `error: `), a prompt on terminals.
struct Device {
    lines: Receiver<String>,
    out: Box<dyn Write + Send>,
    prompt: bool,
    busy: bool,
    ended: bool,
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
    Ok(Some(Device { lines: rx, out, prompt, busy: false, ended: false }))
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
            if !c.busy && !c.closing {
                if let Some(line) = c.next_line() {
                    c.busy = true;
                    out.push(Request { conn: ConnId::Socket(c.id), line });
                }
            }
            c.write();
        }
        self.conns.retain(|c| !((c.eof || c.closing) && !c.busy && c.outbuf.is_empty()));
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
                    let text = match answer {
                        Ok(t) => t,
                        Err(e) => format!("error: {e}"),
                    };
                    if !text.is_empty() {
                        let _ = writeln!(d.out, "{text}");
                    }
                    d.busy = false;
                    d.show_prompt();
                }
            }
        }
    }
}

impl Device {
    fn show_prompt(&mut self) {
        if self.prompt {
            let _ = write!(self.out, "furiwake> ");
        }
        let _ = self.out.flush();
    }
}

impl Conn {
    fn read(&mut self) {
        if self.eof {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    if self.inbuf.len() > MAX_LINE * 4 {
                        break;
                    }
                }
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
    /// the peer has closed its side).
    fn next_line(&mut self) -> Option<String> {
        let end = match self.inbuf.iter().position(|b| *b == b'\n') {
            Some(i) => i,
            None if self.inbuf.len() > MAX_LINE => {
                self.inbuf.clear();
                self.outbuf.extend_from_slice(encode(&Err(format!("command longer than {MAX_LINE} bytes"))).as_bytes());
                self.closing = true;
                return None;
            }
            None if self.eof && !self.inbuf.is_empty() => self.inbuf.len(),
            None => return None,
        };
        let line: Vec<u8> = self.inbuf.drain(..end.min(self.inbuf.len())).collect();
        if !self.inbuf.is_empty() {
            self.inbuf.remove(0);
        }
        Some(String::from_utf8_lossy(&line).trim_end_matches('\r').to_string())
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
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("furiwake-console-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Runs the server's turns until `f` says stop (or 5 s).
    fn turns(s: &mut ConsoleServer, mut f: impl FnMut(&mut ConsoleServer, Vec<Request>) -> bool) {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            let reqs = s.poll();
            if f(s, reqs) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("timed out");
    }

    #[test]
    fn socket_lines_answers_stale_socket_and_cleanup() {
        let dir = scratch("sock");
        let path = dir.join("sub/console.sock");
        // A stale socket (bound, then its listener gone) is replaced.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(UnixListener::bind(&path).unwrap());
        let mut s = ConsoleServer::open(path.to_str().unwrap(), Some("none"));
        assert_eq!(s.socket_path(), Some(path.as_path()));
        // A second appliance does not take over a live socket.
        let other = ConsoleServer::open(path.to_str().unwrap(), Some("none"));
        assert_eq!(other.socket_path(), None);
        drop(other);
        assert!(path.exists(), "the live socket stays");

        let client = std::thread::spawn({
            let path = path.clone();
            move || {
                let mut c = UnixStream::connect(&path).unwrap();
                c.write_all(b"first\nsecond\n").unwrap();
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut got = Vec::new();
                for _ in 0..4 {
                    let mut l = String::new();
                    r.read_line(&mut l).unwrap();
                    got.push(l.trim_end().to_string());
                }
                c.write_all(b"quit").unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
                let mut rest = String::new();
                r.read_to_string(&mut rest).unwrap();
                (got, rest)
            }
        });
        let mut seen = Vec::new();
        turns(&mut s, |s, reqs| {
            assert!(reqs.len() <= 1, "one command in flight per connection");
            for r in reqs {
                seen.push(r.line.clone());
                let quit = r.line == "quit";
                let answer = if r.line == "second" { Err("no".to_string()) } else { Ok(format!("answer to {}", r.line)) };
                s.answer(r.conn, answer, quit);
            }
            seen.len() == 3 && s.conns.is_empty()
        });
        assert_eq!(seen, ["first", "second", "quit"]);
        let (got, rest) = client.join().unwrap();
        assert_eq!(got, ["answer to first", ".ok", "no", ".error"]);
        assert_eq!(rest, "answer to quit\n.ok\n");
        drop(s);
        assert!(!path.exists(), "removed at exit");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn not_a_socket_is_left_alone() {
        let dir = scratch("file");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.sock");
        std::fs::write(&path, "x").unwrap();
        let s = ConsoleServer::open(path.to_str().unwrap(), Some("none"));
        assert_eq!(s.socket_path(), None);
        drop(s);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
