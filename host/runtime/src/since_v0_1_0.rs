//! The host side of the frozen `weir:plugin@0.1.0`, delegating to the newest.
//!
//! A 0.1.0 plugin imports `log@0.1.0` and `http@0.1.0`: their host functions convert
//! to the newest version's types and call its implementation (`host.rs`), so the
//! capability checks and limits exist once. Its exports answer in 0.1.0's own
//! records, converted here to the newest ones. What 0.1.0 cannot say (a writer's
//! `unchanged`) it simply never says.

use super::bindings::since_v0_1_0::connector::exports::weir::plugin::connector as old;
use super::bindings::since_v0_1_0::connector::weir::plugin::{http as old_http, log as old_log};
use super::bindings::since_v0_1_0::transform::exports::weir::plugin::transform as old_transform;
use super::bindings::{connector_api as wc, http, log, transform_api as wtr};
use super::host::HostState;

impl old_log::Host for HostState {
    fn log(&mut self, level: old_log::Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            old_log::Level::Trace => log::Level::Trace,
            old_log::Level::Debug => log::Level::Debug,
            old_log::Level::Info => log::Level::Info,
            old_log::Level::Warn => log::Level::Warn,
            old_log::Level::Error => log::Level::Error,
        };
        log::Host::log(self, level, message, fields)
    }
}

impl old_http::Host for HostState {
    fn send(
        &mut self,
        request: old_http::Request,
    ) -> Result<old_http::Response, old_http::HttpError> {
        let request = http::Request {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        match http::Host::send(self, request) {
            Ok(r) => Ok(old_http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(match e {
                http::HttpError::Denied(m) => old_http::HttpError::Denied(m),
                http::HttpError::InvalidRequest(m) => old_http::HttpError::InvalidRequest(m),
                http::HttpError::Timeout => old_http::HttpError::Timeout,
                http::HttpError::Transport(m) => old_http::HttpError::Transport(m),
                http::HttpError::TooLarge(n) => old_http::HttpError::TooLarge(n),
            }),
        }
    }
}

pub(crate) fn read_request(r: &wc::ReadRequest) -> old::ReadRequest {
    old::ReadRequest {
        entity: r.entity.clone(),
        organization: r.organization.clone(),
        cursor: r.cursor.clone(),
        max_records: r.max_records,
    }
}

pub(crate) fn read_page(p: old::ReadPage) -> wc::ReadPage {
    wc::ReadPage {
        records: p.records,
        rejected: p
            .rejected
            .into_iter()
            .map(|r| wc::RejectedRecord {
                position: r.position,
                key: r.key,
                error: r.error,
            })
            .collect(),
        next_cursor: p.next_cursor,
        done: p.done,
    }
}

pub(crate) fn write_request(r: &wc::WriteRequest) -> old::WriteRequest {
    old::WriteRequest {
        entity: r.entity.clone(),
        organization: r.organization.clone(),
        key_fields: r.key_fields.clone(),
    }
}

pub(crate) fn outcome(o: old::UpsertOutcome) -> wc::UpsertOutcome {
    match o {
        old::UpsertOutcome::Inserted => wc::UpsertOutcome::Inserted,
        old::UpsertOutcome::Updated => wc::UpsertOutcome::Updated,
        old::UpsertOutcome::Failed(e) => wc::UpsertOutcome::Failed(e),
    }
}

pub(crate) fn transformed(t: old_transform::Transformed) -> wtr::Transformed {
    wtr::Transformed {
        records: t.records,
        failures: t
            .failures
            .into_iter()
            .map(|f| wtr::Failure {
                index: f.index,
                error: f.error,
            })
            .collect(),
    }
}
