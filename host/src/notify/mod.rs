//! Notifications about executions: e-mail over SMTP and JSON webhooks.
//!
//! What it is: the daemon hands every execution that ended in Warning or Error (and every
//! recovery or automatic pause) to a [`Notifier`], which composes one message per event and
//! delivers it in the background — SMTP through lettre, webhooks as a JSON `POST` through
//! reqwest — retrying failed deliveries with capped exponential backoff. Repeated failures
//! of one project are grouped: after a message for a project, its further failures within
//! [`NotifySettings::group_window`] are held and sent as one digest at the end of the
//! window, so a project failing every minute does not send sixty mails an hour. An
//! automatic pause is a message about a failing project too: within the window it is
//! held and sent at the window's end together with the held failures (one message), so
//! no two messages about a failing project are closer than the window. A recovery is
//! the one exemption, said so in the digests: it is sent at once, after any digest held
//! for that project, so people read failure → recovery in that order.
//!
//! What it is not: it decides nothing about *whether* an execution deserves a notice
//! (the caller does: it knows the previous status, and auto-pausing), it keeps no state
//! across restarts (held digests are sent by [`Notifier::flush`] at shutdown; a crash
//! loses them), and it has no per-recipient preferences, templates or HTML bodies. It never
//! fails or blocks the caller: delivery problems are logged (`tracing::warn!`) and kept in
//! [`Notifier::delivered`], nothing more.
//!
//! It only depends on tokio, lettre, reqwest, serde, tracing and chrono, so it can be
//! tested on its own against a real SMTP server and an HTTP receiver on 127.0.0.1.

mod mail;
mod message;
mod webhook;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use self::mail::Mailer;
use self::message::Outgoing;
use self::webhook::WebhookClient;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text, no TLS at all (a relay on localhost, a test server).
    None,
    /// Plain connection upgraded with `STARTTLS`, which the server must offer (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte ("SMTPS", port 465).
    Tls,
}

/// Where and how to send mail.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The `From:` address, e.g. `weir <weir@example.org>` or `weir@example.org`.
    pub from: String,
    /// For connecting and for each SMTP command.
    pub timeout: Duration,
}

// Written by hand so that the password can never reach a log line through `{:?}`.
impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Everything the notifier needs besides the events themselves.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// `None`: e-mail recipients get a failed [`Delivery`] ("no SMTP server configured").
    pub smtp: Option<SmtpSettings>,
    /// The dashboard's base address; a message links to `{base_url}/#/executions/{id}`.
    pub base_url: String,
    /// After a message about a project, its Warning/Error events within this window are
    /// held and sent as one digest when the window ends. Zero turns grouping off.
    pub group_window: Duration,
    /// Tries per delivery, the first included (0 is taken as 1).
    pub attempts: u32,
    /// Wait before the second try; doubled for each further try, capped at [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// Lets webhooks reach internal addresses (loopback, private, link-local, ...).
    /// Off by default: projects name webhooks, and a project's author must not
    /// get the daemon to post to the machine's or the network's inside — the same
    /// rule as plugin HTTP ([`crate::runtime::capabilities`]).
    pub allow_internal_webhooks: bool,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            smtp: None,
            base_url: "http://127.0.0.1:8080".into(),
            group_window: Duration::from_secs(15 * 60),
            attempts: 5,
            backoff: Duration::from_secs(2),
            allow_internal_webhooks: false,
        }
    }
}

/// The longest wait between two tries of one delivery.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// How many outcomes [`Notifier::delivered`] keeps (the newest).
pub const DELIVERY_LOG_LEN: usize = 1000;

/// Events waiting for the worker; beyond this `notify` drops the event (and says so)
/// rather than block the caller or grow without bound.
const QUEUE_LEN: usize = 1024;

/// Who hears about a project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipients {
    /// Checked addresses (see [`parse_email_list`]); all of them get one mail together.
    #[serde(default)]
    pub emails: Vec<String>,
    /// Checked `http`/`https` addresses (see [`check_webhook_url`]); each gets a POST.
    #[serde(default)]
    pub webhooks: Vec<String>,
}

impl Recipients {
    pub fn is_empty(&self) -> bool {
        self.emails.is_empty() && self.webhooks.is_empty()
    }
}

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The execution ended in Warning (some records failed).
    Warning,
    /// The execution ended in Error.
    Error,
    /// The first successful execution after a Warning or Error.
    Recovered,
    /// The scheduler paused the project after repeated failures.
    AutoPaused,
    /// A task's `schema_change = "pause"` policy paused the project: its source or
    /// destination schema changed (the event's `schema_changes` say how).
    SchemaPaused,
}

impl EventKind {
    /// Warning and Error are the kinds that repeat, and so the ones that get grouped.
    fn is_failure(self) -> bool {
        matches!(self, EventKind::Warning | EventKind::Error)
    }

    pub fn label(self) -> &'static str {
        match self {
            EventKind::Warning => "Warning",
            EventKind::Error => "Error",
            EventKind::Recovered => "Recovered",
            EventKind::AutoPaused => "Paused after repeated failures",
            EventKind::SchemaPaused => "Paused: schema changed",
        }
    }
}

/// One execution worth telling someone about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub project: String,
    pub execution_id: u64,
    /// The execution's status as shown elsewhere: `Completed`, `Warning` or `Error`.
    pub status: String,
    /// What started it, e.g. `schedule` or `manual`.
    pub trigger: String,
    pub read: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Upserted with the values the destination already held (nothing written).
    #[serde(default)]
    pub unchanged: u64,
    pub failed: u64,
    /// The execution's error, if it stopped on one.
    pub error: Option<String>,
    /// A few record failures, e.g. `key 17: email: invalid`; at most
    /// [`FIRST_ERRORS_SHOWN`] are shown.
    #[serde(default)]
    pub first_errors: Vec<String>,
    /// Schema differences since the last successful validation, one per line
    /// (`task people: source `people`: field `city` added (text)`).
    #[serde(default)]
    pub schema_changes: Vec<String>,
}

/// How many of [`Event::first_errors`] a message shows.
pub const FIRST_ERRORS_SHOWN: usize = 5;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Webhook,
}

/// The outcome of one delivery: one message to one recipient (all the e-mail addresses of
/// an event count as one recipient, since they get one mail together).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// When it was delivered or given up.
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    pub project: String,
    /// The execution the message is about (for a digest: the newest one).
    pub execution_id: u64,
    pub kind: EventKind,
    /// For a digest, the executions it groups (oldest first); empty for a single event.
    pub digest_of: Vec<u64>,
    pub channel: Channel,
    /// E-mail addresses joined by ", ", or the webhook address with any password removed.
    pub recipient: String,
    pub subject: String,
    pub ok: bool,
    /// The last try's error (never contains the SMTP password).
    pub error: Option<String>,
    /// Tries made, the first included.
    pub attempts: u32,
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339())
}

// Notification addresses are read with the project (weir-engine), so a bad one is refused
// when the project is applied; the sender re-checks with lettre's parser before sending.
pub use crate::project::{check_webhook_url, parse_email_list};

/// The notification service: cheap to clone, `Send + Sync`; all clones feed one worker.
///
/// Dropping the last clone ends the worker after it has handed over what it holds; use
/// [`Notifier::flush`] at shutdown to wait for deliveries.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("pending", &*self.shared.pending.borrow())
            .finish()
    }
}

enum Command {
    /// Boxed: an event is large and the channel's slots are sized for the largest command.
    Notify(Box<(Recipients, Event)>),
    /// Send every held digest now, then answer.
    Flush(oneshot::Sender<()>),
}

/// What the handle, the worker and the delivery lanes share.
struct Shared {
    /// Events queued or held plus deliveries not yet finished: `flush` waits for 0.
    pending: watch::Sender<usize>,
    delivered: Mutex<VecDeque<Delivery>>,
}

impl Shared {
    fn add(&self, n: usize) {
        self.pending.send_modify(|p| *p += n);
    }

    fn done(&self, n: usize) {
        self.pending.send_modify(|p| *p = p.saturating_sub(n));
    }

    fn record(&self, delivery: Delivery) {
        // A poisoned lock only means another thread panicked mid-push; the log is still usable.
        let mut log = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == DELIVERY_LOG_LEN {
            log.pop_front();
        }
        log.push_back(delivery);
    }
}

impl Notifier {
    /// Starts the worker on the current tokio runtime (panics outside one, like
    /// `tokio::spawn`). A bad SMTP setting (unparsable `from`, a TLS setup error) does not
    /// fail here: it is logged once and every mail fails with it.
    pub fn start(settings: NotifySettings) -> Notifier {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let shared = Arc::new(Shared {
            pending: watch::Sender::new(0),
            delivered: Mutex::new(VecDeque::new()),
        });
        let mailer = match &settings.smtp {
            None => Err("no SMTP server configured".to_string()),
            Some(smtp) => Mailer::new(smtp).inspect_err(|e| {
                tracing::warn!(host = %smtp.host, port = smtp.port, error = %e, "SMTP settings unusable; e-mail notifications will fail");
            }),
        };
        let worker = Worker {
            rx,
            shared: shared.clone(),
            window: settings.group_window,
            base_url: settings.base_url.trim_end_matches('/').to_string(),
            retry: Retry {
                attempts: settings.attempts.max(1),
                backoff: settings.backoff,
            },
            mailer: mailer.map(Arc::new),
            webhook: WebhookClient::new(settings.allow_internal_webhooks).map_err(|e| {
                tracing::warn!(error = %e, "HTTP client unusable; webhook notifications will fail");
                e
            }),
            groups: HashMap::new(),
            lanes: HashMap::new(),
        };
        tokio::spawn(worker.run());
        Notifier { tx, shared }
    }

    /// Queues a message about `event` for `to`. Never blocks and never fails: when the
    /// queue is full or the worker is gone the event is dropped with a warning and a
    /// failed [`Delivery`].
    pub fn notify(&self, to: &Recipients, event: Event) {
        if to.is_empty() {
            return;
        }
        // Counted before sending so the worker can never finish it before it is counted.
        self.shared.add(1);
        if let Err(e) = self
            .tx
            .try_send(Command::Notify(Box::new((to.clone(), event))))
        {
            self.shared.done(1);
            let (reason, command) = match e {
                mpsc::error::TrySendError::Full(c) => ("notification queue full", c),
                mpsc::error::TrySendError::Closed(c) => ("notifier stopped", c),
            };
            if let Command::Notify(boxed) = command {
                let (to, event) = *boxed;
                tracing::warn!(project = %event.project, execution = event.execution_id, reason, "notification dropped");
                let subject = message::subject_of(&event);
                for (channel, recipient) in recipients_of(&to) {
                    self.shared.record(Delivery {
                        at: now(),
                        project: event.project.clone(),
                        execution_id: event.execution_id,
                        kind: event.kind,
                        digest_of: Vec::new(),
                        channel,
                        recipient,
                        subject: subject.clone(),
                        ok: false,
                        error: Some(reason.to_string()),
                        attempts: 0,
                    });
                }
            }
        }
    }

    /// Sends every held digest now and waits until everything queued has been delivered or
    /// given up, or until `deadline` has passed. For shutdown, and for tests.
    pub async fn flush(&self, deadline: Duration) {
        let finished = tokio::time::timeout(deadline, async {
            let (ack, answered) = oneshot::channel();
            if self.tx.send(Command::Flush(ack)).await.is_ok() {
                let _ = answered.await;
            }
            let mut pending = self.shared.pending.subscribe();
            let _ = pending.wait_for(|n| *n == 0).await;
        })
        .await;
        if finished.is_err() {
            let left = *self.shared.pending.borrow();
            tracing::warn!(
                pending = left,
                "notification flush deadline passed; some notifications are still pending"
            );
        }
    }

    /// The newest outcomes (at most [`DELIVERY_LOG_LEN`]), oldest first.
    pub fn delivered(&self) -> Vec<Delivery> {
        let log = self
            .shared
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect()
    }

    /// Events queued or held plus deliveries in progress.
    pub fn pending(&self) -> usize {
        *self.shared.pending.borrow()
    }
}

fn now() -> DateTime<Utc> {
    // chrono's `clock` feature is off in the host; SystemTime does the same job.
    DateTime::<Utc>::from(std::time::SystemTime::now())
}

fn recipients_of(to: &Recipients) -> Vec<(Channel, String)> {
    let mut out = Vec::new();
    if !to.emails.is_empty() {
        out.push((Channel::Email, to.emails.join(", ")));
    }
    for url in &to.webhooks {
        out.push((Channel::Webhook, webhook::redact(url)));
    }
    out
}

#[derive(Clone, Copy)]
struct Retry {
    attempts: u32,
    backoff: Duration,
}

impl Retry {
    /// The wait after the `attempt`-th failed try: backoff · 2^(attempt-1), capped.
    fn wait_after(self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

/// Grouping state of one project.
struct Group {
    /// When the last message about the project was handed to delivery.
    last_sent: Instant,
    /// Failures that arrived within the window after `last_sent`, oldest first.
    held: Vec<Event>,
    /// An automatic pause that arrived within the window: it waits for the window's
    /// end like the failures, and goes out as one message with them.
    pause: Option<Event>,
    /// The recipients of the newest held event: a digest goes where the project's
    /// notifications go now.
    to: Recipients,
}

/// Where a delivery goes, and so which lane carries it. Deliveries on one lane are made
/// one after the other, which keeps failure → digest → recovery in order for each
/// recipient; a slow or dead webhook only delays its own lane.
#[derive(Clone, PartialEq, Eq, Hash)]
enum LaneKey {
    /// One lane for all mail: it all goes through the one SMTP server.
    Email,
    Webhook(String),
}

struct Job {
    message: Arc<Outgoing>,
    target: Target,
}

enum Target {
    Email(Vec<String>),
    Webhook(String),
}

struct Worker {
    rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    window: Duration,
    base_url: String,
    retry: Retry,
    mailer: Result<Arc<Mailer>, String>,
    webhook: Result<WebhookClient, String>,
    groups: HashMap<String, Group>,
    lanes: HashMap<LaneKey, mpsc::UnboundedSender<Job>>,
}

impl Group {
    /// Whether it holds anything to send at the window's end.
    fn holds(&self) -> bool {
        !self.held.is_empty() || self.pause.is_some()
    }
}

/// The project a group that holds something is about.
fn event_project(group: &Group) -> String {
    group
        .held
        .first()
        .or(group.pause.as_ref())
        .map(|e| e.project.clone())
        .unwrap_or_default()
}

impl Worker {
    async fn run(mut self) {
        loop {
            let next_due = self
                .groups
                .values()
                .filter(|g| g.holds())
                .map(|g| g.last_sent + self.window)
                .min();
            let command = tokio::select! {
                command = self.rx.recv() => command,
                _ = sleep_until(next_due) => {
                    self.release_due();
                    continue;
                }
            };
            match command {
                Some(Command::Notify(boxed)) => {
                    let (to, event) = *boxed;
                    self.handle(to, event)
                }
                Some(Command::Flush(ack)) => {
                    self.release_all();
                    let _ = ack.send(());
                }
                None => {
                    // Every handle is gone: hand over what is held; the lanes finish on their own.
                    self.release_all();
                    return;
                }
            }
        }
    }

    fn handle(&mut self, to: Recipients, event: Event) {
        let now = Instant::now();
        // Forget projects whose window has passed with nothing held: their next failure is
        // news again and goes out at once.
        let window = self.window;
        self.groups
            .retain(|_, g| g.holds() || now < g.last_sent + window);

        match event.kind {
            EventKind::Warning | EventKind::Error => match self.groups.get_mut(&event.project) {
                Some(group) if now < group.last_sent + window => {
                    // Held: stays counted in `pending` until its digest is handed over.
                    group.to = to;
                    group.held.push(event);
                }
                Some(group) if group.holds() => {
                    // The window has ended but its timer has not fired yet: the digest
                    // takes this failure too, rather than two messages going out at once.
                    group.to = to;
                    group.held.push(event);
                    let project = event_project(group);
                    if let Some(mut group) = self.groups.remove(&project) {
                        self.release_held(&mut group);
                        self.groups.insert(project, group);
                    }
                }
                _ => {
                    self.dispatch(Arc::new(message::single(&event, &self.base_url)), &to);
                    self.groups.insert(
                        event.project.clone(),
                        Group {
                            last_sent: now,
                            held: Vec::new(),
                            pause: None,
                            to,
                        },
                    );
                    self.shared.done(1);
                }
            },
            EventKind::Recovered | EventKind::SchemaPaused => {
                // The digest first, so the recovery is the last word. A pause for a
                // schema change is news of its own (not a repeated failure): at once.
                if let Some(group) = self.groups.remove(&event.project) {
                    self.release(group);
                }
                self.dispatch(Arc::new(message::single(&event, &self.base_url)), &to);
                self.shared.done(1);
            }
            EventKind::AutoPaused => {
                // A pause is a message about a failing project: within the interval it
                // waits, with the failures held, for the interval's end (one message).
                let project = event.project.clone();
                let existing = self.groups.remove(&project);
                let due = existing
                    .as_ref()
                    .is_none_or(|g| now >= g.last_sent + window);
                let mut group = existing.unwrap_or(Group {
                    last_sent: now,
                    held: Vec::new(),
                    pause: None,
                    to: to.clone(),
                });
                group.to = to;
                if group.pause.replace(event).is_some() {
                    // Paused twice within one interval: the newer notice says it all.
                    self.shared.done(1);
                }
                if due {
                    self.release_held(&mut group);
                }
                self.groups.insert(project, group);
            }
        }
        debug_assert!(
            !self
                .groups
                .values()
                .any(|g| g.held.iter().any(|e| !e.kind.is_failure())),
            "only failures are held"
        );
    }

    /// Sends the digests whose window has ended; a digest is a message, so the project's
    /// next failures are grouped into the following window.
    fn release_due(&mut self) {
        let now = Instant::now();
        let window = self.window;
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.holds() && g.last_sent + window <= now)
            .map(|(project, _)| project.clone())
            .collect();
        for project in due {
            if let Some(mut group) = self.groups.remove(&project) {
                self.release_held(&mut group);
                self.groups.insert(project, group);
            }
        }
    }

    fn release_all(&mut self) {
        let projects: Vec<String> = self.groups.keys().cloned().collect();
        for project in projects {
            if let Some(mut group) = self.groups.remove(&project) {
                self.release_held(&mut group);
                self.groups.insert(project, group);
            }
        }
    }

    fn release(&mut self, mut group: Group) {
        self.release_held(&mut group);
    }

    fn release_held(&mut self, group: &mut Group) {
        let held = std::mem::take(&mut group.held);
        let message = match group.pause.take() {
            Some(pause) => {
                self.shared.done(1);
                message::paused_with(&held, &pause, &self.base_url, self.window)
            }
            None if held.is_empty() => return,
            None => message::digest(&held, &self.base_url, self.window),
        };
        self.dispatch(Arc::new(message), &group.to);
        group.last_sent = Instant::now();
        self.shared.done(held.len());
    }

    /// Hands one message to the lane of each recipient.
    fn dispatch(&mut self, message: Arc<Outgoing>, to: &Recipients) {
        let mut jobs = Vec::new();
        if !to.emails.is_empty() {
            jobs.push((LaneKey::Email, Target::Email(to.emails.clone())));
        }
        for url in &to.webhooks {
            jobs.push((LaneKey::Webhook(url.clone()), Target::Webhook(url.clone())));
        }
        self.shared.add(jobs.len());
        for (key, target) in jobs {
            let job = Job {
                message: message.clone(),
                target,
            };
            if !self.lanes.contains_key(&key) {
                let lane = self.spawn_lane(&key);
                self.lanes.insert(key.clone(), lane);
            }
            if let Err(mpsc::error::SendError(job)) = self.lanes[&key].send(job) {
                // Only if a lane task died (it does not panic by design); start a new one.
                let lane = self.spawn_lane(&key);
                let _ = lane.send(job);
                self.lanes.insert(key, lane);
            }
        }
    }

    fn spawn_lane(&self, key: &LaneKey) -> mpsc::UnboundedSender<Job> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = match key {
            LaneKey::Email => Sender::Mail(self.mailer.clone()),
            LaneKey::Webhook(_) => Sender::Webhook(self.webhook.clone()),
        };
        tokio::spawn(run_lane(rx, sender, self.shared.clone(), self.retry));
        tx
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// What delivers a lane's jobs.
enum Sender {
    Mail(Result<Arc<Mailer>, String>),
    Webhook(Result<WebhookClient, String>),
}

/// A failed try.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct SendError {
    message: String,
    /// Trying again cannot help (a 5xx SMTP reply, a 4xx HTTP status, a bad setting).
    permanent: bool,
}

impl SendError {
    fn permanent(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            permanent: true,
        }
    }
}

/// An error and its causes on one line ("error sending request: connection refused"),
/// skipping a cause that the message already quotes.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn run_lane(
    mut rx: mpsc::UnboundedReceiver<Job>,
    sender: Sender,
    shared: Arc<Shared>,
    retry: Retry,
) {
    while let Some(job) = rx.recv().await {
        deliver(&job, &sender, &shared, retry).await;
        shared.done(1);
    }
}

async fn deliver(job: &Job, sender: &Sender, shared: &Shared, retry: Retry) {
    let message = &job.message;
    let (channel, recipient) = match &job.target {
        Target::Email(to) => (Channel::Email, to.join(", ")),
        Target::Webhook(url) => (Channel::Webhook, webhook::redact(url)),
    };
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let result = match (&job.target, sender) {
            (Target::Email(to), Sender::Mail(mailer)) => match mailer {
                Ok(mailer) => mailer.send(to, message).await,
                Err(e) => Err(SendError::permanent(e.clone())),
            },
            (Target::Webhook(url), Sender::Webhook(client)) => match client {
                Ok(client) => client.post(url, message).await,
                Err(e) => Err(SendError::permanent(e.clone())),
            },
            _ => Err(SendError::permanent("internal: job on the wrong lane")),
        };
        match result {
            Ok(()) => {
                tracing::info!(
                    project = %message.project,
                    execution = message.execution_id,
                    recipient = %recipient,
                    attempt,
                    "notification delivered"
                );
                break Ok(());
            }
            Err(e) => {
                tracing::warn!(
                    project = %message.project,
                    execution = message.execution_id,
                    recipient = %recipient,
                    attempt,
                    error = %e,
                    "notification delivery failed"
                );
                if e.permanent || attempt >= retry.attempts {
                    tracing::warn!(
                        project = %message.project,
                        execution = message.execution_id,
                        recipient = %recipient,
                        attempts = attempt,
                        permanent = e.permanent,
                        "notification given up"
                    );
                    break Err(e.message);
                }
                tokio::time::sleep(retry.wait_after(attempt)).await;
            }
        }
    };
    crate::metrics::AlertDelivery {
        channel: match channel {
            Channel::Email => crate::metrics::ChannelLabel::email,
            Channel::Webhook => crate::metrics::ChannelLabel::webhook,
        },
        delivered: outcome.is_ok(),
    }
    .emit();
    shared.record(Delivery {
        at: now(),
        project: message.project.clone(),
        execution_id: message.execution_id,
        kind: message.kind,
        digest_of: message.digest_of.clone(),
        channel,
        recipient,
        subject: message.subject.clone(),
        ok: outcome.is_ok(),
        error: outcome.err(),
        attempts: attempt,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let retry = Retry {
            attempts: 10,
            backoff: Duration::from_secs(2),
        };
        assert_eq!(retry.wait_after(1), Duration::from_secs(2));
        assert_eq!(retry.wait_after(2), Duration::from_secs(4));
        assert_eq!(retry.wait_after(3), Duration::from_secs(8));
        assert_eq!(retry.wait_after(40), MAX_BACKOFF);
    }

    #[test]
    fn webhook_urls() {
        assert!(check_webhook_url("https://hooks.example.org/x?y=1").is_ok());
        assert!(check_webhook_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(
            check_webhook_url("ftp://example.org/x")
                .unwrap_err()
                .contains("only http and https")
        );
        assert!(check_webhook_url("example.org/hook").is_err());
        assert!(check_webhook_url("mailto:a@x.org").is_err());
    }

    #[test]
    fn smtp_password_is_not_in_debug() {
        let smtp = SmtpSettings {
            host: "smtp.example.org".into(),
            port: 587,
            tls: TlsMode::StartTls,
            username: Some("weir".into()),
            password: Some("hunter2".into()),
            from: "weir@example.org".into(),
            timeout: Duration::from_secs(10),
        };
        let text = format!(
            "{:?}",
            NotifySettings {
                smtp: Some(smtp),
                ..Default::default()
            }
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn tls_mode_names() {
        for (text, mode) in [
            ("none", TlsMode::None),
            ("starttls", TlsMode::StartTls),
            ("tls", TlsMode::Tls),
        ] {
            let parsed: TlsMode = serde_json::from_str(&format!("{text:?}")).unwrap();
            assert_eq!(parsed, mode);
        }
    }
}
