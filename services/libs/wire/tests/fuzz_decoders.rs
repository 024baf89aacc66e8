//! Fuzzing of the wire decoders: a million inputs (random bytes, and valid messages with bytes
//! flipped, dropped, inserted or cut off) through every decoder a service runs on broker or
//! staging bytes, and through the checks that follow decoding (job id, tile grid, chunk grid,
//! tile index, leading length, float buffers, tile bitmaps). Nothing may panic; an input either
//! decodes or gives an error.
//!
//! `cargo test -p wire --release --test fuzz_decoders` runs it in seconds; `FUZZ_INPUTS=N`
//! changes the count.

use prost::Message;
use wire::v1::{
    stitch_event, JobPlan, JobSpec, JobStarted, JobStatus, Method, StitchEvent, TileOutput,
    TileResult, TileTask,
};

/// splitmix64: a tiny, seeded, well-mixed generator (the inputs are the same on every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn spec() -> JobSpec {
    JobSpec {
        job_id: "job-0123456789abcdef".into(),
        input_url: "s3://bucket/scene.zarr".into(),
        array: "data".into(),
        output_url: "s3://bucket/out.zarr".into(),
        staging_url: "s3://bucket/out.zarr.staging".into(),
        method: Method::Diffusion as i32,
        tile: 64,
        overlap: 16,
        seed: 7,
        shape: vec![3, 1000, 1200],
        chunk_y: 256,
        chunk_x: 256,
        checkpoint_url: "s3://bucket/m.safetensors".into(),
        steps: 25,
        ensemble: 4,
        eta: 1.0,
        dimension_names: vec!["band".into(), "y".into(), "x".into()],
        ..JobSpec::default()
    }
}

/// Valid encodings of every message type, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let task = TileTask {
        job: Some(spec()),
        tile_index: 17,
        signature: vec![0xab; 32],
        published_unix_ms: 1_764_000_000_000,
    };
    let result = StitchEvent {
        event: Some(stitch_event::Event::Tile(TileResult {
            job_id: "job-1".into(),
            tile_index: 3,
            outcome: 1,
            error: String::new(),
            staging_url: "s3://b/s".into(),
            signature: vec![2; 32],
            task_published_unix_ms: 1_764_000_000_000,
        })),
    };
    let started = StitchEvent {
        event: Some(stitch_event::Event::Started(JobStarted {
            job: Some(spec()),
            signature: vec![1; 32],
        })),
    };
    let plan = JobPlan {
        job: Some(spec()),
        dirty_tiles: vec![0b1011_0001; 40],
        tiles_total: 320,
        tiles_dirty: 120,
        signature: Vec::new(),
        planned_unix_ms: 1_764_748_800_000,
        quiet_chunks: vec![0b0100_0010; 4],
        quiet_fill: Some(0.0),
    };
    let output = TileOutput {
        tile_index: 5,
        shape: vec![3, 8, 8],
        values: wire::f32_to_le_bytes(&[1.5; 192]),
        spread: wire::f32_to_le_bytes(&[0.5; 192]),
        members: Vec::new(),
    };
    let status = JobStatus {
        job_id: "job-1".into(),
        state: 1,
        chunks_total: 20,
        chunks_written: 3,
        started_unix_ms: 1_764_748_800_000,
        updated_unix_ms: 1_764_748_860_000,
        ..JobStatus::default()
    };
    vec![
        task.encode_to_vec(),
        result.encode_to_vec(),
        started.encode_to_vec(),
        plan.encode_to_vec(),
        output.encode_to_vec(),
        status.encode_to_vec(),
    ]
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(5) {
            0 if at < b.len() => b[at] ^= 1 << rng.below(8),
            1 if at < b.len() => b[at] = rng.next() as u8,
            2 if at < b.len() => {
                b.remove(at);
            }
            3 => b.insert(at, rng.next() as u8),
            _ => b.truncate(at),
        }
    }
    b
}

/// What a worker and a stitcher do with a decoded spec before trusting it with work.
fn exercise_spec(spec: &JobSpec, tile_index: u64) {
    let _ = spec.id();
    let _ = spec.lead_len();
    let _ = (spec.with_spread(), spec.members_written());
    let _ = spec.chunk_grid().map(|c| c.shape());
    if let Ok(grid) = spec.grid() {
        let _ = grid.len();
        let _ = grid.tile(tile_index);
    }
    let key = wire::JobKey::new(b"a fuzzing key of some length").ok();
    let _ = wire::trust::verify(key.as_ref(), spec, &[1, 2, 3]);
}

fn exercise(bytes: &[u8]) {
    let limit = wire::MAX_MESSAGE_BYTES;
    if let Ok(task) = wire::decode::<TileTask>("TileTask", bytes, limit) {
        if let Some(spec) = &task.job {
            exercise_spec(spec, task.tile_index);
        }
    }
    if let Ok(event) = wire::decode::<StitchEvent>("StitchEvent", bytes, limit) {
        match event.event {
            Some(stitch_event::Event::Started(s)) => {
                if let Some(spec) = &s.job {
                    exercise_spec(spec, 0);
                }
            }
            Some(stitch_event::Event::Tile(t)) => {
                let _ = wire::JobId::parse(&t.job_id);
                let _ = t.outcome();
                let key = wire::JobKey::new(b"a fuzzing key of some length").ok();
                let _ = wire::trust::verify_result(key.as_ref(), &t);
            }
            None => {}
        }
    }
    if let Ok(plan) = wire::decode::<JobPlan>("JobPlan", bytes, usize::MAX) {
        if let Some(spec) = &plan.job {
            exercise_spec(spec, plan.tiles_dirty);
            if let Ok(grid) = spec.grid() {
                let _ = wire::TileSet::from_bytes(plan.dirty_tiles, grid.len());
            }
        }
    }
    if let Ok(out) = wire::decode::<TileOutput>("TileOutput", bytes, usize::MAX) {
        let _ = wire::f32_from_le_bytes("values", &out.values);
        let _ = wire::f32_from_le_bytes("members", &out.members);
    }
    if let Ok(status) = wire::decode::<JobStatus>("JobStatus", bytes, usize::MAX) {
        let _ = status.state();
    }
}

#[test]
fn a_million_hostile_inputs_decode_or_fail_without_panicking() {
    let inputs: usize = std::env::var("FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seeds = seeds();
    let mut rng = Rng(0x7e44_af11);
    let started = std::time::Instant::now();
    let mut decoded = 0usize;
    for i in 0..inputs {
        let bytes = if i % 4 == 0 {
            let n = rng.below(160);
            (0..n).map(|_| rng.next() as u8).collect()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        decoded += usize::from(wire::decode::<TileTask>("TileTask", &bytes, usize::MAX).is_ok());
        exercise(&bytes);
    }
    eprintln!(
        "{inputs} inputs in {:.1} s, {decoded} of them decoded as a TileTask",
        started.elapsed().as_secs_f64()
    );
}
