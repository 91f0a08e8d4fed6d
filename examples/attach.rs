//! Attach a segment by name (published by `examples/publish.rs`, `examples/publish.py`, the
//! CLI, or any Arrow IPC writer) and sum its float64 columns, reading the shared pages in place.
//!
//! ```text
//! cargo run --release --example attach -- prices
//! ```

use arrow_array::{Array, Float64Array};
use shmarrow::SegmentDir;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "prices".into());
    let t0 = std::time::Instant::now();
    let segment = SegmentDir::from_env().attach(&name)?;
    let attach = t0.elapsed();
    println!(
        "attached {name:?} in {attach:?}: {} rows, {} batches, zero-copy: {}",
        segment.num_rows(),
        segment.batches().len(),
        segment.copied_columns().is_empty()
    );
    for (i, field) in segment.schema().fields().iter().enumerate() {
        let sum: f64 = segment
            .batches()
            .iter()
            .filter_map(|b| b.column(i).as_any().downcast_ref::<Float64Array>())
            .map(|a| a.iter().flatten().sum::<f64>())
            .sum();
        if segment
            .batches()
            .iter()
            .any(|b| b.column(i).as_any().is::<Float64Array>())
        {
            println!("sum({}) = {sum}", field.name());
        }
    }
    Ok(())
}
