//! Per-call limits: memory, time, and host-side buffers.

use std::time::Duration;

/// The limits every plugin call runs under. The defaults suit a connector moving
/// batches of a few thousand records; a connection may lower or raise them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory one instance may have (default 256 MiB).
    pub memory_bytes: usize,
    /// The longest one call may run (default 30 s). Enforced by epoch
    /// interruption, so a loop without calls into the host is stopped too.
    pub call_timeout: Duration,
    /// Bytes of a plugin's stderr kept for error messages (default 64 KiB).
    pub stderr_bytes: usize,
    /// Log lines a plugin may emit per call before the rest are dropped with one
    /// note (default 1,000).
    pub log_lines_per_call: usize,
    /// The longest log message kept, in bytes (default 4 KiB).
    pub log_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_bytes: 256 << 20,
            call_timeout: Duration::from_secs(30),
            stderr_bytes: 64 << 10,
            log_lines_per_call: 1_000,
            log_line_bytes: 4 << 10,
        }
    }
}

/// The store's resource limiter: refuses memory growth past the limit and
/// remembers that it did, so a later trap can be reported as "out of memory"
/// rather than as the guest's own abort.
pub(crate) struct Limiter {
    pub memory_bytes: usize,
    pub refused_growth_to: Option<usize>,
    /// The largest size granted so far (the instance's high-water mark).
    pub high_water: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.refused_growth_to = Some(desired);
            return Ok(false);
        }
        self.high_water = self.high_water.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
