//! Attach a table of nested records (from `examples/structured_producer.py` or `.rs`) and reduce
//! nested fields by dotted path, reading the shared buffers in place.
//!
//! ```text
//! cargo run --example structured_consumer -- particles pos.x pos.y mass
//! ```

use shmarrow::SegmentDir;
use shmarrow::reduce::{Number, ReduceOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "particles".into());
    let fields: Vec<String> = args.collect();
    let segment = SegmentDir::from_env().attach(&name)?;
    println!(
        "{name}: {} rows, zero-copy: {}",
        segment.num_rows(),
        segment.copied_columns().is_empty()
    );
    for field in segment.schema().fields() {
        println!("  {}: {}", field.name(), field.data_type());
    }
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    for s in segment.reduce(&fields, &ReduceOptions::default())? {
        let show = |n: Option<Number>| {
            n.map_or("-".to_string(), |n| match n {
                Number::Int(i) => i.to_string(),
                Number::Float(f) => format!("{f:.6}"),
            })
        };
        println!(
            "{:<12} count {:>8} nulls {:>6} mean {:>14.6} std {:>12.6} min {:>12} max {:>12}",
            s.column,
            s.count,
            s.null_count,
            s.mean,
            s.std,
            show(s.min),
            show(s.max)
        );
    }
    Ok(())
}
