//! `furiwake console`: attaches to a running appliance's console socket.
//!
//! With `-c COMMAND` it prints the answer and exits (status 1 when the
//! command failed), for scripts and tests. Without, an interactive session
//! with line editing, history (`~/.furiwake_history`) and tab completion
//! of command words and object names (pools, servers, virtual servers,
//! asked from the appliance with `_names`), via rustyline.

use super::command::{self, decode, Framed, Names};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;

/// A connection to the appliance.
pub struct Session {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Session {
    pub fn connect(path: &Path) -> Result<Session, String> {
        let s = UnixStream::connect(path).map_err(|e| {
            format!("cannot connect to the console at {}: {e} (is `furiwake run` up? its socket is `[console] socket`; use --socket PATH)", path.display())
        })?;
        let reader = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        Ok(Session { writer: s, reader })
    }

    /// Sends one command; returns its answer (Err: the command failed).
    pub fn call(&mut self, line: &str) -> Result<Result<String, String>, String> {
        let line = line.replace('\n', " ");
        writeln!(self.writer, "{line}").map_err(|e| format!("console: {e}"))?;
        let mut text = String::new();
        loop {
            let mut l = String::new();
            let n = self.reader.read_line(&mut l).map_err(|e| format!("console: {e}"))?;
            if n == 0 {
                return Err("console: the appliance closed the connection".into());
            }
            match decode(l.trim_end_matches('\n')) {
                Framed::Text(t) => {
                    text.push_str(t);
                    text.push('\n');
                }
                Framed::End { ok } => {
                    let text = text.trim_end_matches('\n').to_string();
                    return Ok(if ok { Ok(text) } else { Err(text) });
                }
            }
        }
    }

    fn names(&mut self) -> Names {
        match self.call("_names") {
            Ok(Ok(t)) => Names::parse(&t),
            _ => Names::default(),
        }
    }
}

/// `furiwake console [--socket PATH] [-c COMMAND]`.
pub fn main(socket: &Path, command: Option<&str>) -> ExitCode {
    let mut session = match Session::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Some(c) => one(&mut session, c),
        None => interactive(session),
    }
}

fn one(session: &mut Session, line: &str) -> ExitCode {
    match session.call(line) {
        Ok(Ok(text)) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Completion over the names last fetched from the appliance.
struct ConsoleHelper {
    names: Rc<RefCell<Names>>,
}

impl Completer for ConsoleHelper {
    type Candidate = Pair;
    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = command::complete(&line[..pos], &self.names.borrow());
        let only = words.len() == 1;
        let pairs =
            words.into_iter().map(|w| Pair { display: w.clone(), replacement: if only { format!("{w} ") } else { w } }).collect();
        Ok((start, pairs))
    }
}

impl Hinter for ConsoleHelper {
    type Hint = String;
}
impl Highlighter for ConsoleHelper {}
impl Validator for ConsoleHelper {}
impl Helper for ConsoleHelper {}

fn interactive(mut session: Session) -> ExitCode {
    let names = Rc::new(RefCell::new(session.names()));
    // Bash-like: Tab completes the common prefix, a second Tab lists.
    let config = rustyline::Config::builder().completion_type(rustyline::CompletionType::List).auto_add_history(false).build();
    let mut rl: Editor<ConsoleHelper, DefaultHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: line editor: {e}");
            return ExitCode::from(2);
        }
    };
    rl.set_helper(Some(ConsoleHelper { names: Rc::clone(&names) }));
    let history = std::env::var_os("HOME").map(|h| Path::new(&h).join(".furiwake_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    if let Ok(Ok(banner)) = session.call("_banner") {
        println!("{banner}");
    }
    println!("furiwake console: `help` lists the commands, Tab completes, Ctrl-D leaves");
    let mut status = ExitCode::SUCCESS;
    loop {
        match rl.readline("furiwake> ") {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(line);
                if matches!(command::parse(line), Ok(Some(command::Command::Quit))) {
                    break;
                }
                match session.call(line) {
                    Ok(Ok(text)) => {
                        if !text.is_empty() {
                            println!("{text}");
                        }
                    }
                    Ok(Err(e)) => println!("error: {e}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        status = ExitCode::from(2);
                        break;
                    }
                }
                // Names change with run-time changes: refresh.
                *names.borrow_mut() = session.names();
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: {e}");
                status = ExitCode::from(2);
                break;
            }
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    status
}
