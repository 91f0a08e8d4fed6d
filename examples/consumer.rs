//! Receive every batch of a channel (see `examples/producer.rs`), checking order and contents,
//! and print a JSON summary.
//!
//! ```text
//! cargo run --release --example consumer -- ticks
//! ```

use std::time::Duration;

use arrow_array::{Array, Float64Array, Int64Array};
use shmarrow::SegmentDir;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "ticks".into());
    let dir = SegmentDir::from_env();
    // The producer may not have created the channel yet: wait up to 30 s for it.
    let patience = Some(Duration::from_secs(30));
    let mut consumer = dir.subscribe_within(&name, patience)?;
    consumer.wait_policy().timeout = patience;
    let (mut batches, mut rows, mut ok, mut sum) = (0i64, 0u64, true, 0.0f64);
    while let Some(received) = consumer.recv()? {
        let b = &received.batch;
        let seq = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or("seq is not int64")?;
        let x = b
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or("x is not float64")?;
        let n = b.num_rows();
        ok &= received.seq == batches as u64
            && seq.values().iter().all(|&s| s == batches)
            && (0..n).all(|r| x.value(r) == batches as f64 + r as f64 / n as f64);
        sum += x.values().iter().sum::<f64>();
        rows += n as u64;
        batches += 1;
    }
    println!(
        r#"{{"consumer": "rust", "batches": {batches}, "rows": {rows}, "in_order_and_correct": {ok}, "sum": {sum}}}"#
    );
    Ok(())
}
