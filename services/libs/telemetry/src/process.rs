//! `process_*` metrics (the Prometheus client conventions: CPU seconds, resident and virtual
//! memory, open and maximum file descriptors, start time), read from `/proc/self` at every scrape,
//! and `terrafill_build_info`.
//!
//! The prometheus crate's own process collector needs its `process` feature and the `procfs`
//! crate; these few fields are simpler to read directly. Off Linux nothing is reported.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts, Registry};

/// What one read of `/proc/self` gives.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    start_time_seconds: f64,
}

/// The fields of `/proc/self/stat` after the command name, from `state` on (`proc(5)`):
/// utime and stime are fields 14 and 15, starttime 22, vsize 23 and rss 24, counted from 1.
fn parse_stat(
    stat: &str,
    ticks_per_second: f64,
    page_bytes: f64,
    boot_time: f64,
) -> Option<Sample> {
    // The command name may hold spaces and parentheses; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(Sample {
        cpu_seconds: (field(14)? + field(15)?) / ticks_per_second,
        resident_bytes: field(24)? * page_bytes,
        virtual_bytes: field(23)?,
        start_time_seconds: boot_time + field(22)? / ticks_per_second,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
fn parse_boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit on open files from `/proc/self/limits` (`None` when unlimited).
fn parse_max_fds(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `process_*` metrics, refreshed from `/proc/self` at each scrape.
struct ProcessCollector {
    cpu: Counter,
    /// CPU seconds already added to `cpu` (a counter only goes up by increments).
    cpu_seen: Mutex<f64>,
    resident: Gauge,
    virtual_memory: Gauge,
    start_time: Gauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    descs: Vec<Desc>,
}

impl ProcessCollector {
    fn new() -> prometheus::Result<Self> {
        let cpu = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds",
        ))?;
        let resident = Gauge::new(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
        )?;
        let virtual_memory = Gauge::new(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
        )?;
        let start_time = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
        )?;
        let open_fds = IntGauge::new("process_open_fds", "Number of open file descriptors")?;
        let max_fds = IntGauge::new("process_max_fds", "Maximum number of open file descriptors")?;
        let descs = [
            cpu.desc(),
            resident.desc(),
            virtual_memory.desc(),
            start_time.desc(),
            open_fds.desc(),
            max_fds.desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        Ok(Self {
            cpu,
            cpu_seen: Mutex::new(0.0),
            resident,
            virtual_memory,
            start_time,
            open_fds,
            max_fds,
            descs,
        })
    }

    /// Reads `/proc/self` into the metrics; false when it cannot (not Linux).
    fn refresh(&self) -> bool {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let boot = read("/proc/stat")
            .and_then(|s| parse_boot_time(&s))
            .unwrap_or(0.0);
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as f64;
        let Some(s) = read("/proc/self/stat").and_then(|s| parse_stat(&s, ticks, page, boot))
        else {
            return false;
        };
        if let Ok(mut seen) = self.cpu_seen.lock() {
            if s.cpu_seconds > *seen {
                self.cpu.inc_by(s.cpu_seconds - *seen);
                *seen = s.cpu_seconds;
            }
        }
        self.resident.set(s.resident_bytes);
        self.virtual_memory.set(s.virtual_bytes);
        self.start_time.set(s.start_time_seconds);
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some(max) = read("/proc/self/limits").and_then(|l| parse_max_fds(&l)) {
            self.max_fds.set(max);
        }
        true
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if !self.refresh() {
            return Vec::new();
        }
        [
            self.cpu.collect(),
            self.resident.collect(),
            self.virtual_memory.collect(),
            self.start_time.collect(),
            self.open_fds.collect(),
            self.max_fds.collect(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Registers the `process_*` metrics and `terrafill_build_info{version, service}` (always 1) in
/// `registry`: every terrafill process that serves metrics has them.
///
/// # Errors
/// A prometheus error when they are already registered.
pub fn register_process_metrics(registry: &Registry, service: &str) -> prometheus::Result<()> {
    registry.register(Box::new(ProcessCollector::new()?))?;
    let info = IntGauge::with_opts(
        Opts::new(
            "terrafill_build_info",
            "The running terrafill build (always 1)",
        )
        .const_label("version", env!("CARGO_PKG_VERSION"))
        .const_label("service", service),
    )?;
    info.set(1);
    registry.register(Box::new(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_past_a_command_name_with_spaces() {
        // proc(5) layout; the name holds a space and a ')'.
        let stat = "4242 (tf worker) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 3 0 1000 123456789 2048 18446744073709551615";
        let s = parse_stat(stat, 100.0, 4096.0, 1_700_000_000.0);
        assert_eq!(
            s,
            Some(Sample {
                cpu_seconds: 3.0,
                resident_bytes: 2048.0 * 4096.0,
                virtual_bytes: 123_456_789.0,
                start_time_seconds: 1_700_000_010.0,
            })
        );
        assert_eq!(parse_stat("garbage", 100.0, 4096.0, 0.0), None);
    }

    #[test]
    fn boot_time_and_fd_limit_are_parsed() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1764000000\n"),
            Some(1.764e9)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 1048576              files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds("Max open files  unlimited unlimited files"),
            None
        );
    }

    #[test]
    fn this_process_reports_its_memory_and_build() -> prometheus::Result<()> {
        let registry = Registry::new();
        register_process_metrics(&registry, "test")?;
        let families = registry.gather();
        let value = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .and_then(|f| f.get_metric().first())
                .map(|m| m.get_gauge().get_value())
        };
        if cfg!(target_os = "linux") {
            assert!(value("process_resident_memory_bytes").unwrap_or(0.0) > 1e6);
            assert!(value("process_open_fds").unwrap_or(0.0) >= 3.0);
        }
        assert_eq!(value("terrafill_build_info"), Some(1.0));
        Ok(())
    }
}
