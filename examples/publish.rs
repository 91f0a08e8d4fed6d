//! Publish a table under a name, then wait: run `cargo run --example attach` in another
//! terminal to read it from a second process. Ctrl-C (or Enter) ends it, and the `owner`
//! segment goes with it.
//!
//! ```text
//! cargo run --release --example publish -- prices 10000000
//! ```

use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch};
use shmarrow::{CreateOptions, Lifetime, SegmentDir};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "prices".into());
    let rows: i64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;

    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from_iter_values(0..rows)) as _),
        (
            "price",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| 100.0 + (i % 1000) as f64 * 0.01),
            )) as _,
        ),
    ])?;
    let dir = SegmentDir::from_env();
    let created = dir.create(
        &name,
        &batch.schema(),
        &[batch],
        &CreateOptions::default().lifetime(Lifetime::Owner),
    )?;
    println!(
        "published {name:?}: {rows} rows, {} bytes at {}",
        created.bytes(),
        created.path().display()
    );
    println!("attach from Rust:   cargo run --example attach -- {name}");
    println!("attach from Python: python examples/attach.py {name}");
    println!("press Enter to remove it");
    std::io::stdin().read_line(&mut String::new())?;
    Ok(()) // `created` drops: the owner segment is removed
}
