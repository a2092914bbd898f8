//! A TCP proxy on 127.0.0.1 that a test can take down and bring back: the network
//! between weir and a server failing, while the server itself keeps what it was
//! told. (Killing json-server instead would test json-server: it answers `201`
//! before it writes db.json, so a SIGKILL loses the last acknowledged record.)
//!
//! `down` stops accepting and resets every open connection (the client sees
//! "connection reset" for a request in flight and "connection refused" after);
//! `up` listens on the same port again.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct TcpProxy {
    pub port: u16,
    target: u16,
    running: Option<Running>,
}

struct Running {
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Proxies a free port to `127.0.0.1:target`.
    pub fn start(target: u16) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        TcpProxy {
            port,
            target,
            running: Some(serve(listener, target)),
        }
    }

    /// `127.0.0.1:port`, as a grant names it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops listening and resets every open connection.
    pub fn down(&mut self) {
        let Some(r) = self.running.take() else {
            return;
        };
        r.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = r.accept.join();
        for s in r.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Listens on the same port again.
    pub fn up(&mut self) {
        if self.running.is_some() {
            return;
        }
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if e.kind() == ErrorKind::AddrInUse => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("rebind 127.0.0.1:{}: {e}", self.port),
            }
        };
        self.running = Some(serve(listener, self.target));
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.down();
    }
}

fn serve(listener: TcpListener, target: u16) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
    let (s, o) = (stop.clone(), open.clone());
    let accept = std::thread::spawn(move || {
        for client in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                break;
            }
            let Ok(client) = client else { continue };
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            {
                let mut open = o.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(upstream.try_clone().unwrap());
            }
            pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
            pipe(upstream, client);
        }
    });
    Running { stop, open, accept }
}

/// Copies `from` to `to` on a thread until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
