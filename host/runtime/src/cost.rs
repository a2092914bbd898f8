//! What a plugin instance cost the host: calls, time inside the plugin, linear memory,
//! records and bytes crossing the boundary, HTTP requests it had the host send.
//!
//! Measured by the host around every call (`instance::Slot::call`), so a plugin cannot
//! under-report. It is not a profiler: time inside a call includes the host functions the
//! plugin called (an HTTP request's wait, a PostgreSQL statement), which is what the
//! administrator pays for that plugin.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Totals for one plugin instance (or a sum of several, see [`PluginCost::add`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginCost {
    /// Calls into the plugin.
    pub calls: u64,
    /// Wall-clock time inside those calls, in microseconds.
    pub wall_micros: u64,
    /// CPU time of the calling thread inside those calls, in microseconds.
    pub cpu_micros: u64,
    /// The longest single call, in microseconds (compare with the call time limit).
    pub slowest_call_micros: u64,
    /// The most linear memory any of its instances had, in bytes (compare with the
    /// memory limit).
    pub memory_high_water_bytes: u64,
    /// Instances created (1 unless a trap discarded one).
    pub instantiations: u64,
    /// Calls that trapped (time limit, memory limit, panic).
    pub traps: u64,
    /// Those traps by kind.
    pub traps_by_kind: TrapCounts,
    /// Records handed to the plugin (upserted, transformed).
    pub records_in: u64,
    /// Records the plugin handed back (read, transformed).
    pub records_out: u64,
    /// Bytes of record data handed to the plugin.
    pub bytes_in: u64,
    /// Bytes of record data the plugin handed back.
    pub bytes_out: u64,
    /// HTTP requests the host sent for it (granted or not).
    pub http_requests: u64,
    /// Request body bytes of those.
    pub http_bytes_sent: u64,
    /// Response body bytes of those.
    pub http_bytes_received: u64,
}

impl PluginCost {
    /// Adds `other` in: sums, except the high-water mark and the slowest call (maxima).
    pub fn add(&mut self, other: &PluginCost) {
        self.calls += other.calls;
        self.wall_micros += other.wall_micros;
        self.cpu_micros += other.cpu_micros;
        self.slowest_call_micros = self.slowest_call_micros.max(other.slowest_call_micros);
        self.memory_high_water_bytes = self
            .memory_high_water_bytes
            .max(other.memory_high_water_bytes);
        self.instantiations += other.instantiations;
        self.traps += other.traps;
        self.traps_by_kind.add(&other.traps_by_kind);
        self.records_in += other.records_in;
        self.records_out += other.records_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.http_requests += other.http_requests;
        self.http_bytes_sent += other.http_bytes_sent;
        self.http_bytes_received += other.http_bytes_received;
    }

    /// Counts one call that took `wall` and `cpu`.
    pub(crate) fn count_call(&mut self, wall: Duration, cpu: Duration) {
        let wall = micros(wall);
        self.calls += 1;
        self.wall_micros += wall;
        self.cpu_micros += micros(cpu);
        self.slowest_call_micros = self.slowest_call_micros.max(wall);
    }
}

/// Traps by kind (see [`crate::TrapKind`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrapCounts {
    /// Calls stopped at their time limit.
    pub timeout: u64,
    /// Calls stopped at their memory limit.
    pub out_of_memory: u64,
    /// Calls whose stack overflowed.
    pub stack_overflow: u64,
    /// Calls that panicked or aborted.
    pub panic: u64,
    /// Any other trap.
    pub other: u64,
}

impl TrapCounts {
    fn add(&mut self, other: &TrapCounts) {
        self.timeout += other.timeout;
        self.out_of_memory += other.out_of_memory;
        self.stack_overflow += other.stack_overflow;
        self.panic += other.panic;
        self.other += other.other;
    }

    /// Counts one trap of `kind`.
    pub(crate) fn count(&mut self, kind: &crate::TrapKind) {
        use crate::TrapKind as K;
        let slot = match kind {
            K::Timeout(_) => &mut self.timeout,
            K::OutOfMemory { .. } => &mut self.out_of_memory,
            K::StackOverflow => &mut self.stack_overflow,
            K::Panic(_) => &mut self.panic,
            K::Other(_) => &mut self.other,
        };
        *slot += 1;
    }
}

/// What the host's imports counted during one call (kept in the instance's state).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ImportCounts {
    pub http_requests: u64,
    pub http_bytes_sent: u64,
    pub http_bytes_received: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// CPU time the calling thread has used so far. Plugin calls are synchronous on the
/// calling thread, so the difference around a call is the CPU spent in it.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on every Linux the host runs on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sums_counts_and_keeps_maxima() {
        let mut a = PluginCost {
            calls: 2,
            wall_micros: 10,
            slowest_call_micros: 7,
            memory_high_water_bytes: 100,
            ..PluginCost::default()
        };
        let b = PluginCost {
            calls: 1,
            wall_micros: 5,
            slowest_call_micros: 5,
            memory_high_water_bytes: 300,
            http_requests: 4,
            ..PluginCost::default()
        };
        a.add(&b);
        assert_eq!(a.calls, 3);
        assert_eq!(a.wall_micros, 15);
        assert_eq!(a.slowest_call_micros, 7);
        assert_eq!(a.memory_high_water_bytes, 300);
        assert_eq!(a.http_requests, 4);
    }

    #[test]
    fn thread_cpu_time_moves_with_work_not_with_sleep() {
        let t0 = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(50));
        let slept = thread_cpu_time() - t0;
        let t1 = thread_cpu_time();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let worked = thread_cpu_time() - t1;
        // A wall clock would count the sleep; a broken clock would count nothing. The
        // work's share of 50 ms depends on how busy the machine is, so only "some, and
        // no more than the wall time" is certain.
        assert!(
            slept < Duration::from_millis(10),
            "sleeping cost {slept:?} of CPU"
        );
        assert!(
            worked > Duration::ZERO && worked <= start.elapsed() + Duration::from_millis(1),
            "50 ms of work cost {worked:?} of CPU"
        );
    }
}
