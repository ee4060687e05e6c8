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

/// A console on a device whose output is `out` and whose typed lines
/// come from `lines`, with a prompt.
fn device_console(out: Box<dyn Write + Send>, lines: Receiver<String>) -> ConsoleServer {
    let mut device = Device::start(lines, out, true).unwrap();
    device.show_prompt();
    ConsoleServer { listener: None, path: None, conns: Vec::new(), device: Some(device), next_id: 1 }
}

/// A device output that blocks every write until opened (a tty
/// stopped by XOFF, a wedged serial line) and keeps what it got.
#[derive(Clone, Default)]
struct Stopped {
    open: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    got: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Stopped {
    fn resume(&self) {
        let (open, cv) = &*self.open;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.got.lock().unwrap()).into_owned()
    }
}

impl Write for Stopped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (open, cv) = &*self.open;
        let mut g = open.lock().unwrap();
        while !*g {
            g = cv.wait(g).unwrap();
        }
        self.got.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stopped_device_never_blocks_the_control_loop() {
    let out = Stopped::default();
    let (typed, lines) = mpsc::channel();
    let s = device_console(Box::new(out.clone()), lines);
    // The operator types (or pastes) 40 commands into a stopped tty.
    for i in 0..40 {
        typed.send(format!("cmd{i}")).unwrap();
    }
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = s;
        let mut answered = 0;
        turns(&mut s, |s, reqs| {
            for r in reqs {
                s.answer(r.conn, Ok(format!("answer to {}", r.line)), false);
                answered += 1;
            }
            answered == 40
        });
        let _ = done_tx.send(s);
    });
    let mut s = done_rx.recv_timeout(Duration::from_secs(10)).expect("the control loop blocked on the device");
    let dropped = s.device.as_ref().unwrap().dropped;
    assert!(dropped > 0 && dropped < 40, "{dropped} answers dropped");
    // The line runs again: what was queued comes out, in order, then
    // a note with the number dropped before the next answer.
    out.resume();
    // Let the queued answers out before the next command: typed while
    // the queue is still full, its answer would be dropped too.
    let delivered = 40 - dropped as usize;
    let last = format!("answer to cmd{}\n", delivered - 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.text().contains(&last) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(out.text().contains(&last), "the queued answers did not come out: {:?}", out.text());
    typed.send("after".into()).unwrap();
    turns(&mut s, |s, reqs| {
        for r in reqs {
            s.answer(r.conn, Ok(format!("answer to {}", r.line)), false);
        }
        out.text().contains("answer to after")
    });
    let mut expect = String::from("furiwake> ");
    for i in 0..delivered {
        expect.push_str(&format!("answer to cmd{i}\nfuriwake> "));
    }
    expect.push_str(&format!("note: {dropped} console answers dropped: the device is not keeping up\nanswer to after\nfuriwake> "));
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.text() != expect && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(out.text(), expect);
}

fn one_connection(name: &str) -> (PathBuf, ConsoleServer) {
    let dir = scratch(name);
    let path = dir.join("console.sock");
    let s = ConsoleServer::open(path.to_str().unwrap(), Some("none"));
    assert_eq!(s.socket_path(), Some(path.as_path()));
    (dir, s)
}

#[test]
fn pipelined_input_is_bounded_while_a_command_is_in_flight() {
    let (dir, mut s) = one_connection("pipelined");
    let c = UnixStream::connect(dir.join("console.sock")).unwrap();
    // 1000 commands at once; the first is not answered yet.
    let writer = std::thread::spawn({
        let mut c = c.try_clone().unwrap();
        move || {
            let mut all = String::new();
            for i in 0..1000 {
                all.push_str(&format!("command number {i:04}\n"));
            }
            let _ = c.write_all(all.as_bytes());
        }
    });
    let mut first = None;
    let mut most = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        let reqs = s.poll();
        if let Some(r) = reqs.into_iter().next() {
            assert!(first.is_none(), "one command in flight");
            first = Some(r);
        }
        most = most.max(s.conns.first().map_or(0, |c| c.inbuf.len()));
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = first.expect("the first command");
    assert_eq!(first.line, "command number 0000");
    assert!(most <= MAX_INPUT, "{most} bytes buffered");
    // Answered one by one, every line comes through, in order.
    let mut seen = vec![first.line.clone()];
    s.answer(first.conn, Ok(String::new()), false);
    let reader = std::thread::spawn({
        let c = c.try_clone().unwrap();
        move || {
            let mut r = BufReader::new(c);
            let mut n = 0;
            let mut l = String::new();
            while n < 1000 && r.read_line(&mut l).is_ok_and(|k| k > 0) {
                n += usize::from(l == ".ok\n");
                l.clear();
            }
            n
        }
    });
    turns(&mut s, |s, reqs| {
        for r in reqs {
            seen.push(r.line.clone());
            s.answer(r.conn, Ok(String::new()), false);
        }
        seen.len() == 1000
    });
    writer.join().unwrap();
    assert_eq!(reader.join().unwrap(), 1000);
    for (i, l) in seen.iter().enumerate() {
        assert_eq!(*l, format!("command number {i:04}"));
    }
    c.shutdown(std::net::Shutdown::Both).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_line_over_the_limit_is_refused_and_the_connection_closed() {
    let (dir, mut s) = one_connection("long");
    let mut c = UnixStream::connect(dir.join("console.sock")).unwrap();
    // A complete line (newline included) one byte over the limit,
    // then one that fits: neither runs.
    let mut long = "x".repeat(MAX_LINE + 1);
    long.push_str("\nshow pools\n");
    c.write_all(long.as_bytes()).unwrap();
    let mut handed = Vec::new();
    turns(&mut s, |s, reqs| {
        handed.extend(reqs.into_iter().map(|r| r.line));
        s.conns.is_empty()
    });
    assert!(handed.is_empty(), "{handed:?}");
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert_eq!(got, format!("command longer than {MAX_LINE} bytes\n.error\n"));
    // A line of exactly the limit is a command.
    let mut c = UnixStream::connect(dir.join("console.sock")).unwrap();
    let exact = "y".repeat(MAX_LINE);
    c.write_all(format!("{exact}\r\n").as_bytes()).unwrap();
    let mut line = None;
    turns(&mut s, |_, reqs| {
        line = reqs.into_iter().next().map(|r| r.line);
        line.is_some()
    });
    assert_eq!(line.as_deref(), Some(exact.as_str()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_that_never_reads_holds_at_most_one_answer() {
    let (dir, mut s) = one_connection("noread");
    let mut c = UnixStream::connect(dir.join("console.sock")).unwrap();
    c.write_all("show connections\n".repeat(100).as_bytes()).unwrap();
    // Big answers, more than the socket buffer takes.
    let answer = "a connection line\n".repeat(64 * 1024);
    let size = encode(&Ok(answer.clone())).len();
    let mut handed = 0;
    let mut most = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        for r in s.poll() {
            handed += 1;
            s.answer(r.conn, Ok(answer.clone()), false);
        }
        most = most.max(s.conns.first().map_or(0, |c| c.outbuf.len()));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(most <= size, "{most} bytes waiting for a client that does not read (one answer: {size})");
    assert!(handed < 10, "{handed} commands run for a client that does not read");
    // Once it reads, the rest runs.
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(c);
        let mut n = 0;
        let mut l = String::new();
        while n < 100 && r.read_line(&mut l).is_ok_and(|k| k > 0) {
            n += usize::from(l == ".ok\n");
            l.clear();
        }
        n
    });
    turns(&mut s, |s, reqs| {
        for r in reqs {
            handed += 1;
            s.answer(r.conn, Ok(answer.clone()), false);
        }
        handed == 100 && s.conns.first().is_some_and(|c| c.outbuf.is_empty())
    });
    assert_eq!(reader.join().unwrap(), 100);
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
