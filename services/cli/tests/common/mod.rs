//! Helpers shared by the end-to-end tests: scenes written with zarr-io, the `terrafill` binary,
//! and the real services `tests/run` starts (RabbitMQ, an S3-compatible server, Python readers).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use zarr_io::{MosaicSpec, Scene, Window};

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_terrafill"))
}

/// Runs the binary and returns its output.
pub fn terrafill(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("terrafill runs");
    eprintln!(
        "terrafill {}\n  exit {:?}\n  stdout: {}\n  stderr: {}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the binary, asserting that it succeeds (naming its stderr); returns its output.
pub fn terrafill_ok(args: &[&str]) -> Output {
    let out = terrafill(args);
    assert!(
        out.status.success(),
        "terrafill {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Trains the tests' tiny model on `input` (30 steps of 16-px tiles, batch 4) into `ckpt`, with
/// `extra` flags; returns the output of the successful run.
pub fn train_tiny(input: &str, ckpt: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        input,
        "--checkpoint",
        ckpt,
        "--steps",
        "30",
        "--tile",
        "16",
        "--batch",
        "4",
    ];
    args.extend(extra);
    terrafill_ok(&args)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A smooth, band-dependent field with cloud-like NaN gaps over `gap_fraction` of each plane
/// (the same gaps in every plane of the last leading index only when `gap_all` is false).
pub fn synthetic(shape: &[u64], gap_fraction: f64, seed: u64) -> Vec<f32> {
    let (h, w) = (
        shape[shape.len() - 2] as usize,
        shape[shape.len() - 1] as usize,
    );
    let lead: u64 = shape[..shape.len() - 2].iter().product();
    let mut v = Vec::with_capacity(lead as usize * h * w);
    for l in 0..lead as usize {
        for y in 0..h {
            for x in 0..w {
                let (fy, fx) = (y as f32 / 17.0, x as f32 / 23.0);
                v.push(
                    100.0 * l as f32
                        + 40.0 * (fy + seed as f32).sin() * (fx * 0.7).cos()
                        + 0.37 * x as f32,
                );
            }
        }
    }
    if gap_fraction > 0.0 {
        let plane = h * w;
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let target = (gap_fraction * plane as f64) as usize;
        let mut hidden = vec![false; plane];
        let mut count = 0;
        while count < target {
            let (cy, cx) = ((next() % h as u64) as i64, (next() % w as u64) as i64);
            let r = (3 + next() % 12) as i64;
            for y in (cy - r).max(0)..(cy + r).min(h as i64) {
                for x in (cx - r).max(0)..(cx + r).min(w as i64) {
                    let i = y as usize * w + x as usize;
                    if (y - cy).pow(2) + (x - cx).pow(2) <= r * r && !hidden[i] {
                        hidden[i] = true;
                        count += 1;
                    }
                }
            }
        }
        for (i, value) in v.iter_mut().enumerate() {
            if hidden[i % plane] {
                *value = f32::NAN;
            }
        }
    }
    v
}

/// Dimension names for a rank-2, 3 or 4 scene.
pub fn dims(rank: usize) -> Vec<String> {
    let all = ["time", "band", "y", "x"];
    all[all.len() - rank.clamp(2, 4)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Attributes a real scene carries.
pub fn attrs() -> Map<String, Value> {
    let v = json!({"crs": "EPSG:32618", "geotransform": [101985.0, 30.0, 0.0, 2826915.0, 0.0, -30.0], "units": "DN"});
    v.as_object().unwrap().clone()
}

/// Writes a float32 scene group at `url` with array `data`.
pub fn write(url: &str, shape: &[u64], chunk: (u64, u64), values: &[f32]) {
    write_array(url, "data", shape, chunk, values);
}

/// Writes float32 array `array` into the group at `url` (creating the group if needed).
pub fn write_array(url: &str, array: &str, shape: &[u64], chunk: (u64, u64), values: &[f32]) {
    let spec = MosaicSpec {
        shape: shape.to_vec(),
        chunk_yx: chunk,
        dimension_names: dims(shape.len()),
        with_spread: false,
        members: 0,
        array_attributes: Map::new(),
        data_fill: f32::NAN,
    };
    runtime()
        .block_on(zarr_io::write_scene(url, array, &spec, attrs(), values))
        .unwrap();
}

/// Reads a whole array of a group.
pub fn read(url: &str, array: &str) -> Vec<f32> {
    runtime().block_on(async {
        let s = Scene::open(url, array, None).await.unwrap();
        s.read_window(Window::new(0, 0, s.height(), s.width()))
            .await
            .unwrap()
            .values
    })
}

/// Bit patterns, so NaNs compare too.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python with zarr-python and xarray (tests/run sets TERRAFILL_PYTHON).
pub fn python() -> PathBuf {
    std::env::var_os("TERRAFILL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// RabbitMQ URL for tests.
pub fn amqp_url() -> String {
    std::env::var("TERRAFILL_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A unique `s3://` prefix on the test server; fails (never skips) without one.
pub fn s3_prefix(name: &str) -> String {
    let bucket = std::env::var("TERRAFILL_TEST_S3_BUCKET")
        .expect("TERRAFILL_TEST_S3_BUCKET unset: run the tests through tests/run, which starts an S3 server");
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL unset: run tests/run"
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3://{bucket}/{name}-{nanos}")
}

/// A unique `az://` prefix in the test container on Azurite (`tests/run` starts it and creates
/// the container); fails (never skips) without one.
pub fn azure_prefix(name: &str) -> String {
    let container = std::env::var("TERRAFILL_TEST_AZ_CONTAINER").expect(
        "TERRAFILL_TEST_AZ_CONTAINER unset: run the tests through tests/run, which starts Azurite",
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("az://{container}/{name}-{nanos}")
}

/// Child processes killed when the test ends, however it ends.
pub struct Fleet(pub Vec<Child>);

impl Fleet {
    /// Starts `terrafill ARGS`; returns its index.
    pub fn spawn(&mut self, args: &[&str]) -> usize {
        let child = bin()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.0.push(child);
        self.0.len() - 1
    }
}

impl Fleet {
    /// A stitcher (index 0) and two workers (indices 1 and 2) on `amqp`.
    pub fn cluster(amqp: &str) -> Self {
        Self::of(amqp, 1, 2)
    }

    /// `stitchers` stitchers (the first indices), then `workers` workers, on `amqp`.
    pub fn of(amqp: &str, stitchers: usize, workers: usize) -> Self {
        let mut fleet = Fleet(Vec::new());
        for _ in 0..stitchers {
            fleet.spawn(&["stitcher", "--broker", amqp]);
        }
        for _ in 0..workers {
            fleet.spawn(&["worker", "--broker", amqp]);
        }
        fleet
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Tiles of `job` staged so far.
pub fn staged_tiles(staging_url: &str, job: &str) -> usize {
    runtime().block_on(async {
        let s = zarr_io::Staging::open(staging_url).unwrap();
        s.list(&format!("{job}/tiles"))
            .await
            .map(|k| k.len())
            .unwrap_or(0)
    })
}

/// Messages waiting in a dead-letter queue (0 before it exists).
pub fn dead_letters(amqp: &str, dlq: &str) -> u64 {
    runtime().block_on(async {
        let b = broker::connect(Some(amqp)).await.unwrap();
        b.queue_depth(dlq).await.unwrap_or(0)
    })
}

/// Runs `terrafill fill INPUT OUTPUT EXTRA…` and asserts that it succeeded.
pub fn fill_ok(input: &str, output: &str, extra: &[&str]) {
    let mut args = vec!["fill", input, output];
    args.extend(extra);
    let out = terrafill(&args);
    assert!(
        out.status.success(),
        "fill {input} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `ok` every 20 ms until it holds, failing the test after `limit`; returns the time it
/// took.
pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what} not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Waits until `job` has `n` tiles staged under `staging`, asserting that `submit` is still
/// running meanwhile (a job that ends first leaves nothing to interrupt).
pub fn wait_for_staged(staging: &str, job: &str, n: usize, submit: &mut Child) {
    wait_for(
        &format!("{n} staged tiles of {job}"),
        Duration::from_secs(120),
        || {
            assert!(
                submit.try_wait().unwrap().is_none(),
                "job {job} ended before {n} tiles were staged"
            );
            staged_tiles(staging, job) >= n
        },
    );
}

/// A TCP port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `GET path` on 127.0.0.1:`port`: (status code, body), or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    Some((code, body.unwrap_or_default()))
}

/// The value of the first sample of `metric` (name and labels as written before the value) in a
/// Prometheus text exposition.
pub fn metric_value(exposition: &str, metric: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == metric || (name.starts_with(metric) && name[metric.len()..].starts_with('{')))
                .then(|| value.parse().ok())?
        })
}

/// The stored chunk files of `array` in the local group `group`, in path order (none when the
/// array stores no chunk).
pub fn chunk_files(group: &std::path::Path, array: &str) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&group.join(array).join("c"), &mut files);
    files.sort();
    files
}

/// The tensors of a checkpoint (not its metadata, which records wall times), sorted by name.
pub fn checkpoint_tensors(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec()))
        .collect();
    out.sort();
    out
}

/// The object at `url`, `None` when there is none.
pub fn object(url: &str) -> Option<Vec<u8>> {
    runtime().block_on(async {
        match zarr_io::get_bytes(url).await {
            Ok(b) => Some(b.to_vec()),
            Err(zarr_io::ZarrIoError::ObjectNotFound { .. }) => None,
            Err(e) => panic!("reading {url}: {e}"),
        }
    })
}
