//! Composing messages: one subject, one plain-text body and one JSON document per message,
//! shared by every recipient, so a mail and a webhook always say the same thing.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::{Event, EventKind, FIRST_ERRORS_SHOWN};

/// A composed message, ready for any channel.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub project: String,
    /// The execution it is about (for a digest: the newest).
    pub execution_id: u64,
    pub kind: EventKind,
    /// For a digest, the grouped executions, oldest first.
    pub digest_of: Vec<u64>,
    pub subject: String,
    pub text: String,
    pub json: serde_json::Value,
}

/// Longest error text quoted; an engine error can carry a whole plugin backtrace.
const ERROR_CHARS: usize = 2000;
/// Longest record error line quoted.
const RECORD_ERROR_CHARS: usize = 300;
/// Longest project name in a subject line.
const SUBJECT_PROJECT_CHARS: usize = 100;

pub(super) fn link(base_url: &str, execution_id: u64) -> String {
    format!("{base_url}/#/executions/{execution_id}")
}

/// `[weir] contacts-sync: Error (execution 42)`.
pub(super) fn subject_of(event: &Event) -> String {
    format!(
        "[weir] {}: {} (execution {})",
        one_line(&event.project, SUBJECT_PROJECT_CHARS),
        event.kind.label(),
        event.execution_id
    )
}

/// The JSON a webhook receives: the event's own fields plus `link` and `text` (the
/// subject line; chat services such as Slack or Mattermost show `text` as it is).
#[derive(Serialize)]
struct EventPayload<'a> {
    #[serde(flatten)]
    event: &'a Event,
    link: String,
    text: &'a str,
}

pub(super) fn single(event: &Event, base_url: &str) -> Outgoing {
    let subject = subject_of(event);
    let link = link(base_url, event.execution_id);
    let mut text = String::new();
    let headline = match event.kind {
        EventKind::Warning => format!(
            "Execution {} of {} ended with warnings: some records failed.",
            event.execution_id, event.project
        ),
        EventKind::Error => {
            format!(
                "Execution {} of {} failed.",
                event.execution_id, event.project
            )
        }
        EventKind::Recovered => format!(
            "{} is working again: execution {} ended {}.",
            event.project, event.execution_id, event.status
        ),
        EventKind::AutoPaused => format!(
            "{} was paused after repeated failures (the last one: execution {}). \
             Its schedule will not run it again until it is resumed.",
            event.project, event.execution_id
        ),
        EventKind::SchemaPaused => format!(
            "{} was paused because a schema changed since its last successful validation \
             (execution {}). Its schedule will not run it again until it is resumed.",
            event.project, event.execution_id
        ),
    };
    text.push_str(&clean(&headline));
    text.push_str("\n\n");
    write_details(&mut text, event);
    let _ = write!(text, "\nDetails: {link}\n");
    let json = serde_json::to_value(EventPayload {
        event,
        link: link.clone(),
        text: &subject,
    })
    .unwrap_or_else(|_| json!({ "project": event.project, "link": link, "text": subject }));
    Outgoing {
        project: event.project.clone(),
        execution_id: event.execution_id,
        kind: event.kind,
        digest_of: Vec::new(),
        subject,
        text,
        json,
    }
}

/// One message for failures held during a grouping window: names every one of them and
/// details the newest. `held` is never empty and is oldest first.
pub(super) fn digest(held: &[Event], base_url: &str, window: Duration) -> Outgoing {
    let newest = held.last().expect("a digest groups at least one event");
    let project = &newest.project;
    let count = held.len();
    let noun = if count == 1 {
        "execution"
    } else {
        "executions"
    };
    let list: Vec<String> = held
        .iter()
        .map(|e| format!("{} {}", e.execution_id, one_line(&e.status, 40)))
        .collect();
    let headline = format!(
        "{count} more failed {noun} of {project}: {}",
        list.join(", ")
    );
    let subject = format!(
        "[weir] {}: {count} more failed {noun} (newest: execution {})",
        one_line(project, SUBJECT_PROJECT_CHARS),
        newest.execution_id
    );
    let link = link(base_url, newest.execution_id);

    let mut text = String::new();
    text.push_str(&clean(&headline));
    text.push_str("\n\nThe newest:\n\n");
    write_details(&mut text, newest);
    let _ = write!(text, "\nDetails: {link}\n");
    text.push_str(&interval_note(window));

    let executions: Vec<serde_json::Value> = held
        .iter()
        .map(|e| {
            json!({
                "execution_id": e.execution_id,
                "kind": e.kind,
                "status": e.status,
                "trigger": e.trigger,
                "failed": e.failed,
                "error": e.error.as_deref().map(|t| truncate(t, ERROR_CHARS)),
                "link": self::link(base_url, e.execution_id),
            })
        })
        .collect();
    let json = json!({
        "kind": "digest",
        "project": project,
        "execution_id": newest.execution_id,
        "status": newest.status,
        "link": link,
        "executions": executions,
        "text": headline,
    });
    Outgoing {
        project: project.clone(),
        execution_id: newest.execution_id,
        kind: newest.kind,
        digest_of: held.iter().map(|e| e.execution_id).collect(),
        subject,
        text,
        json,
    }
}

/// What a digest promises, and the one exemption.
fn interval_note(window: Duration) -> String {
    format!(
        "\nweir sends at most one message about a failing project every {}, \
         a pause notice included; the failures in between are grouped like this. \
         Only a recovery is sent at once (after any failures still held), so that \
         no one goes on believing a project fails when it works again.\n",
        human(window)
    )
}

/// The pause notice, held until the project's interval ended: it also names the
/// failures held with it (oldest first; may be empty).
pub(super) fn paused_with(
    held: &[Event],
    pause: &Event,
    base_url: &str,
    window: Duration,
) -> Outgoing {
    let mut m = single(pause, base_url);
    if !held.is_empty() {
        let list: Vec<String> = held
            .iter()
            .map(|e| format!("{} {}", e.execution_id, one_line(&e.status, 40)))
            .collect();
        let line = clean(&format!(
            "Failed since the last message: {}.\n\n",
            list.join(", ")
        ));
        if let Some(at) = m.text.find("\n\n") {
            m.text.insert_str(at + 2, &line);
        }
        m.digest_of = held.iter().map(|e| e.execution_id).collect();
        m.json["digest_of"] = json!(m.digest_of);
    }
    m.text.push_str(&interval_note(window));
    m
}

fn write_details(text: &mut String, event: &Event) {
    let _ = writeln!(text, "Project:   {}", one_line(&event.project, 200));
    let _ = writeln!(text, "Status:    {}", one_line(&event.status, 40));
    let _ = writeln!(text, "Execution: {}", event.execution_id);
    let _ = writeln!(text, "Trigger:   {}", one_line(&event.trigger, 100));
    let _ = writeln!(
        text,
        "Records:   read {}, inserted {}, updated {}, unchanged {}, failed {}",
        event.read, event.inserted, event.updated, event.unchanged, event.failed
    );
    if let Some(error) = &event.error {
        let _ = writeln!(text, "Error:     {}", clean(&truncate(error, ERROR_CHARS)));
    }
    if !event.first_errors.is_empty() {
        let shown = event.first_errors.len().min(FIRST_ERRORS_SHOWN);
        let total = (event.failed as usize).max(event.first_errors.len());
        if total > shown {
            let _ = writeln!(text, "\nFirst record errors ({shown} of {total}):");
        } else {
            let _ = writeln!(text, "\nRecord errors:");
        }
        for line in event.first_errors.iter().take(FIRST_ERRORS_SHOWN) {
            let _ = writeln!(text, "  {}", one_line(line, RECORD_ERROR_CHARS));
        }
    }
    if !event.schema_changes.is_empty() {
        let _ = writeln!(
            text,
            "\nSchema changes since the last successful validation:"
        );
        for line in &event.schema_changes {
            let _ = writeln!(text, "  {}", one_line(line, RECORD_ERROR_CHARS));
        }
    }
}

/// Text from plugins and users goes into mail: control characters other than line breaks
/// and tabs are replaced, so nothing can fake terminal escapes or break the layout.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// One line, at most `max` characters: for subjects and list items.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&flat, max)
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// `90s` → "1m 30s", `3600s` → "1h".
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{} ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, id: u64) -> Event {
        Event {
            kind,
            project: "contacts-sync".into(),
            execution_id: id,
            status: "Error".into(),
            trigger: "schedule".into(),
            read: 10,
            inserted: 7,
            updated: 1,
            unchanged: 3,
            failed: 2,
            error: Some("destination refused\x1b[31m the batch".into()),
            first_errors: (1..=7)
                .map(|k| format!("key {k}: email: invalid"))
                .collect(),
            schema_changes: Vec::new(),
        }
    }

    #[test]
    fn a_schema_pause_names_the_differences() {
        let mut e = event(EventKind::SchemaPaused, 9);
        e.first_errors.clear();
        e.schema_changes =
            vec!["task people (pause): source `people`: field `city` added (text)".into()];
        let m = single(&e, "http://dash");
        assert_eq!(
            m.subject,
            "[weir] contacts-sync: Paused: schema changed (execution 9)"
        );
        assert!(
            m.text.starts_with("contacts-sync was paused because a schema changed since its last successful validation (execution 9)."),
            "{}",
            m.text
        );
        assert!(
            m.text.contains("\nSchema changes since the last successful validation:\n  task people (pause): source `people`: field `city` added (text)\n"),
            "{}",
            m.text
        );
        assert_eq!(m.json["kind"], "schema_paused");
        assert_eq!(
            m.json["schema_changes"][0],
            "task people (pause): source `people`: field `city` added (text)"
        );
    }

    #[test]
    fn single_message_has_everything() {
        let m = single(&event(EventKind::Error, 42), "http://h:8080");
        assert_eq!(m.subject, "[weir] contacts-sync: Error (execution 42)");
        assert!(
            m.text
                .contains("read 10, inserted 7, updated 1, unchanged 3, failed 2"),
            "{}",
            m.text
        );
        assert!(m.text.contains("Details: http://h:8080/#/executions/42\n"));
        assert!(m.text.contains("key 5: email: invalid") && !m.text.contains("key 6:"));
        assert!(m.text.contains("(5 of 7)"));
        assert!(!m.text.contains('\x1b'), "control characters are cleaned");
        assert_eq!(m.json["link"], "http://h:8080/#/executions/42");
        assert_eq!(m.json["kind"], "error");
        assert_eq!(m.json["failed"], 2);
    }

    #[test]
    fn subject_cannot_carry_header_breaks() {
        let mut e = event(EventKind::Warning, 1);
        e.project = "evil\r\nBcc: x@y.org".into();
        assert!(!subject_of(&e).contains(['\r', '\n']));
    }

    #[test]
    fn digest_names_every_grouped_execution() {
        let held = vec![
            event(EventKind::Error, 43),
            event(EventKind::Error, 44),
            event(EventKind::Error, 45),
        ];
        let m = digest(&held, "http://h", Duration::from_secs(900));
        assert!(m.text.starts_with(
            "3 more failed executions of contacts-sync: 43 Error, 44 Error, 45 Error\n"
        ));
        assert!(m.text.contains("Details: http://h/#/executions/45"));
        assert!(m.text.contains("every 15m"));
        assert_eq!(m.digest_of, vec![43, 44, 45]);
        assert_eq!(m.json["executions"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(90)), "1m 30s");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_millis(300)), "300 ms");
    }
}
