//! Stream record batches to consumers through a channel: batch `i` holds `rows` rows whose
//! `seq` column is `i` and whose `x` column is `i + row / rows`.
//!
//! ```text
//! cargo run --release --example producer -- ticks 100000 16 2    # NAME BATCHES ROWS CONSUMERS
//! cargo run --release --example consumer -- ticks                # in two other terminals
//! python examples/consumer.py ticks
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use shmarrow::{ChannelOptions, CreateOptions, Lifetime, SegmentDir};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "ticks".into());
    let batches: i64 = args.next().map_or(Ok(1000), |s| s.parse())?;
    let rows: usize = args.next().map_or(Ok(16), |s| s.parse())?;
    let consumers: usize = args.next().map_or(Ok(1), |s| s.parse())?;

    let schema = Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("x", DataType::Float64, false),
    ]));
    let dir = SegmentDir::from_env();
    let slot = (rows * 16 + 4096).next_power_of_two() as u64;
    // An owner channel: removed when the producer drops (and by `shmarrow gc` if this process
    // is killed first).
    let options = ChannelOptions::default()
        .slots(64)
        .slot_size(slot)
        .create_options(CreateOptions::default().lifetime(Lifetime::Owner));
    let mut producer = dir.create_producer(&name, &schema, &options)?;
    eprintln!("channel {name:?} ready; waiting for {consumers} consumer(s)");
    while producer.consumers() < consumers {
        std::thread::sleep(Duration::from_millis(1));
    }
    let t0 = Instant::now();
    for i in 0..batches {
        let seq = Int64Array::from(vec![i; rows]);
        let x =
            Float64Array::from_iter_values((0..rows).map(|r| i as f64 + r as f64 / rows as f64));
        producer.send(&RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(seq), Arc::new(x)],
        )?)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    producer.close();
    println!(
        "sent {batches} batches of {rows} rows in {secs:.3} s ({:.0} batches/s)",
        batches as f64 / secs
    );
    Ok(())
}
