//! Declarative dataset schemas (`schemas/*.json`) and a deterministic, parallel generator of
//! record batches for them. The format is specified in `schemas/README.md`.

use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::types::*;
use arrow_array::*;
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use serde_json::Value;

/// Longest generated string or list, and largest fixed-size list.
const MAX_LENGTH: usize = 1 << 20;
/// Most values (string bytes, list items) one generated column of one batch may hold: a batch
/// is built in private memory, and string offsets are 32-bit.
const MAX_BATCH_VALUES: usize = 1 << 30;

/// `rows` items of up to `each` values each fit in one batch.
fn check_batch_values(rows: usize, each: usize) -> anyhow::Result<usize> {
    match rows.checked_mul(each) {
        Some(total) if total <= MAX_BATCH_VALUES => Ok(total),
        _ => bail!(
            "{rows} rows of up to {each} values each is more than {MAX_BATCH_VALUES} in one batch; use fewer --batch-rows"
        ),
    }
}

/// A parsed dataset schema: Arrow fields plus how to generate each.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub schema: SchemaRef,
    specs: Vec<Spec>,
}

/// How one field (and its children) is generated.
#[derive(Debug, Clone)]
struct Spec {
    field: Field,
    null_fraction: f64,
    how: Gen,
    children: Vec<Spec>,
}

/// A dataset schema file (`schemas/README.md`). Unknown keys are refused at load, here and in
/// every object below: a misspelt key is an error, never silently a default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetDef {
    name: Option<String>,
    #[serde(rename = "description")]
    _description: Option<String>,
    fields: Vec<FieldDef>,
}

/// A field. `name` is required but for list items (default `item`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldDef {
    name: Option<String>,
    /// A type name (`"int64"`) or a [`NestedDef`] object; read by [`parse_type`], which
    /// names the field in its errors.
    #[serde(rename = "type")]
    data_type: Value,
    nullable: Option<bool>,
    #[serde(default)]
    null_fraction: f64,
    #[serde(default, rename = "gen")]
    how: Gen,
}

/// A nested type: exactly one of `struct`, `list`, `large_list`, `fixed_size_list` (with
/// `size`) or `dictionary` (with `index`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NestedDef {
    #[serde(rename = "struct")]
    fields: Option<Vec<FieldDef>>,
    list: Option<Value>,
    large_list: Option<Value>,
    fixed_size_list: Option<Value>,
    size: Option<u64>,
    dictionary: Option<String>,
    index: Option<String>,
}

/// How values are generated (`gen`); which keys apply depends on the type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Gen {
    #[serde(default)]
    dist: Dist,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    std: Option<f64>,
    start: Option<f64>,
    step: Option<f64>,
    /// `bool`: the probability of true.
    p: Option<f64>,
    /// Strings and dictionaries: the values to choose from.
    values: Option<Vec<Value>>,
    /// Strings and lists: `[MIN, MAX]` length.
    length: Option<Vec<u64>>,
}

/// The distribution of numbers.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Dist {
    #[default]
    Uniform,
    Normal,
    Sequence,
}

impl Dataset {
    /// Parse the JSON text of a dataset schema.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let def: DatasetDef = match serde_json::from_str(text) {
            Ok(def) => def,
            Err(e) if e.is_syntax() || e.is_eof() => {
                return Err(anyhow::Error::new(e).context("not valid JSON"));
            }
            Err(e) => return Err(e.into()),
        };
        let specs = def
            .fields
            .into_iter()
            .map(|f| parse_field(f, None))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let schema = Schema::new(specs.iter().map(|s| s.field.clone()).collect::<Vec<_>>());
        Ok(Self {
            name: def.name.unwrap_or_else(|| "dataset".to_owned()),
            schema: Arc::new(schema),
            specs,
        })
    }

    /// Read and parse a dataset schema file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("dataset schema {}", path.display()))
    }

    /// Batch `index` of `rows` rows: the same for a given seed whatever the thread count.
    pub fn batch(
        &self,
        seed: u64,
        index: u64,
        first_row: u64,
        rows: usize,
    ) -> anyhow::Result<RecordBatch> {
        let columns = self
            .specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut rng = Rng::new(seed, index, i as u64);
                generate(spec, rows, first_row, &mut rng)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// A field; `default_name` is the name of a list item that has none.
fn parse_field(def: FieldDef, default_name: Option<&str>) -> anyhow::Result<Spec> {
    let name = def
        .name
        .or_else(|| default_name.map(str::to_owned))
        .context("a field without \"name\"")?;
    let ctx = || format!("field {name:?}");
    let null_fraction = def.null_fraction;
    let nullable = def.nullable.unwrap_or(null_fraction > 0.0);
    if !(0.0..=1.0).contains(&null_fraction) || (null_fraction > 0.0 && !nullable) {
        bail!("field {name:?}: null_fraction must be in [0, 1] and needs \"nullable\": true");
    }
    let (data_type, children) = parse_type(&def.data_type).with_context(ctx)?;
    if matches!(data_type, DataType::Dictionary(..)) && def.how.values.is_none() {
        bail!("field {name:?}: a dictionary needs \"gen\": {{\"values\": [...]}}");
    }
    Ok(Spec {
        field: Field::new(name, data_type, nullable),
        null_fraction,
        how: def.how,
        children,
    })
}

fn parse_type(v: &Value) -> anyhow::Result<(DataType, Vec<Spec>)> {
    if let Some(s) = v.as_str() {
        return Ok((parse_scalar(s)?, Vec::new()));
    }
    if !v.is_object() {
        bail!("a type is a string or an object");
    }
    let def = NestedDef::deserialize(v)?;
    let kinds = [
        def.fields.is_some(),
        def.list.is_some(),
        def.large_list.is_some(),
        def.fixed_size_list.is_some(),
        def.dictionary.is_some(),
    ];
    if kinds.iter().filter(|&&k| k).count() != 1
        || (def.size.is_some() && def.fixed_size_list.is_none())
        || (def.index.is_some() && def.dictionary.is_none())
    {
        bail!(
            "unknown type {v}: give one of struct, list, large_list, fixed_size_list (with size), dictionary (with index)"
        );
    }
    let item = |key: &str, item: &Value| -> anyhow::Result<Spec> {
        parse_item(item).with_context(|| format!("the item of {key:?}"))
    };
    if let Some(fields) = def.fields {
        let children = fields
            .into_iter()
            .map(|f| parse_field(f, None))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let fields: Fields = children.iter().map(|c| c.field.clone()).collect();
        return Ok((DataType::Struct(fields), children));
    }
    for (key, list, make) in [
        (
            "list",
            &def.list,
            DataType::List as fn(Arc<Field>) -> DataType,
        ),
        ("large_list", &def.large_list, DataType::LargeList),
    ] {
        if let Some(list) = list {
            let child = item(key, list)?;
            return Ok((make(Arc::new(child.field.clone())), vec![child]));
        }
    }
    if let Some(list) = &def.fixed_size_list {
        let size = def
            .size
            .filter(|&n| (1..=MAX_LENGTH as u64).contains(&n))
            .and_then(|n| i32::try_from(n).ok())
            .with_context(|| format!("fixed_size_list needs \"size\" from 1 to {MAX_LENGTH}"))?;
        let child = item("fixed_size_list", list)?;
        return Ok((
            DataType::FixedSizeList(Arc::new(child.field.clone()), size),
            vec![child],
        ));
    }
    let values = parse_scalar(def.dictionary.as_deref().unwrap_or_default())?;
    let index = parse_scalar(def.index.as_deref().unwrap_or("int32"))?;
    if !index.is_dictionary_key_type() {
        bail!("dictionary index must be a signed or unsigned integer type, not {index}");
    }
    Ok((
        DataType::Dictionary(Box::new(index), Box::new(values)),
        Vec::new(),
    ))
}

/// A list item: a field (its name defaults to `item`) or just a type.
fn parse_item(item: &Value) -> anyhow::Result<Spec> {
    let is_field = item
        .as_object()
        .is_some_and(|o| o.contains_key("type") || o.contains_key("name"));
    let def = if is_field {
        FieldDef::deserialize(item)?
    } else {
        FieldDef {
            name: None,
            data_type: item.clone(),
            nullable: None,
            null_fraction: 0.0,
            how: Gen::default(),
        }
    };
    parse_field(def, Some("item"))
}

fn parse_scalar(s: &str) -> anyhow::Result<DataType> {
    let unit = |u: &str| -> anyhow::Result<TimeUnit> {
        Ok(match u.trim() {
            "s" => TimeUnit::Second,
            "ms" => TimeUnit::Millisecond,
            "us" => TimeUnit::Microsecond,
            "ns" => TimeUnit::Nanosecond,
            other => bail!("unknown time unit {other:?}"),
        })
    };
    let s = s.trim();
    Ok(match s {
        "bool" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float16" => DataType::Float16,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "utf8" | "string" => DataType::Utf8,
        "large_utf8" => DataType::LargeUtf8,
        "binary" => DataType::Binary,
        "date32" => DataType::Date32,
        _ => {
            if let Some(inner) = s
                .strip_prefix("timestamp[")
                .and_then(|r| r.strip_suffix(']'))
            {
                let mut parts = inner.splitn(2, ',');
                let u = unit(parts.next().unwrap_or_default())?;
                DataType::Timestamp(u, parts.next().map(|tz| Arc::from(tz.trim())))
            } else if let Some(inner) = s
                .strip_prefix("duration[")
                .and_then(|r| r.strip_suffix(']'))
            {
                DataType::Duration(unit(inner)?)
            } else if let Some(inner) = s
                .strip_prefix("decimal128(")
                .and_then(|r| r.strip_suffix(')'))
            {
                let (p, sc) = inner
                    .split_once(',')
                    .context("decimal128(PRECISION, SCALE)")?;
                let (p, sc): (u8, i8) = (p.trim().parse()?, sc.trim().parse()?);
                if p == 0 || p > 38 {
                    bail!("decimal128 precision must be 1..=38");
                }
                DataType::Decimal128(p, sc)
            } else {
                bail!("unknown type {s:?}")
            }
        }
    })
}

/// SplitMix64: small, fast, and reproducible from (seed, batch, field).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, batch: u64, field: u64) -> Self {
        let mut r = Rng(seed
            ^ batch.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ field.wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(f64::MIN_POSITIVE), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Numbers for a numeric leaf: `{"dist": "uniform", "min", "max"}` (default 0..1000),
/// `{"dist": "normal", "mean", "std"}`, `{"dist": "sequence", "start", "step"}` (by row number).
fn numbers(
    how: &Gen,
    rows: usize,
    first_row: u64,
    rng: &mut Rng,
    int: bool,
) -> anyhow::Result<Vec<f64>> {
    Ok(match how.dist {
        Dist::Uniform => {
            let (lo, hi) = (
                how.min.unwrap_or(0.0),
                how.max.unwrap_or(if int { 1000.0 } else { 1.0 }),
            );
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                bail!("gen: min and max must be finite, min <= max");
            }
            // `as` saturates: a span wider than u64 draws from all of u64.
            let span = ((hi - lo) as u64).saturating_add(1);
            (0..rows)
                .map(|_| {
                    if int {
                        (lo + rng.below(span) as f64).min(hi)
                    } else {
                        lo + rng.unit() * (hi - lo)
                    }
                })
                .collect()
        }
        Dist::Normal => {
            let (m, s) = (how.mean.unwrap_or(0.0), how.std.unwrap_or(1.0));
            (0..rows)
                .map(|_| m + s * rng.normal())
                .map(|x| if int { x.round() } else { x })
                .collect()
        }
        Dist::Sequence => {
            let (start, step) = (how.start.unwrap_or(0.0), how.step.unwrap_or(1.0));
            (0..rows)
                .map(|i| start + step * (first_row + i as u64) as f64)
                .collect()
        }
    })
}

fn nulls(spec: &Spec, rows: usize, rng: &mut Rng) -> Option<NullBuffer> {
    (spec.null_fraction > 0.0)
        .then(|| NullBuffer::from_iter((0..rows).map(|_| rng.unit() >= spec.null_fraction)))
}

/// `"values"` as strings (a value that is not a JSON string as its JSON text).
fn values(how: &Gen) -> Option<Vec<String>> {
    let values = how.values.as_ref()?;
    Some(
        values
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
    )
}

fn strings(how: &Gen, rows: usize, rng: &mut Rng) -> anyhow::Result<Vec<String>> {
    if let Some(values) = values(how) {
        if values.is_empty() {
            bail!("gen: \"values\" is empty");
        }
        return Ok((0..rows)
            .map(|_| values[rng.below(values.len() as u64) as usize].clone())
            .collect());
    }
    let (lo, hi) = lengths(how)?;
    check_batch_values(rows, hi)?;
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    Ok((0..rows)
        .map(|_| {
            let n = lo + rng.below((hi - lo + 1) as u64) as usize;
            (0..n)
                .map(|_| ALNUM[rng.below(ALNUM.len() as u64) as usize] as char)
                .collect()
        })
        .collect())
}

/// `"length": [min, max]` (default [0, 8]).
fn lengths(how: &Gen) -> anyhow::Result<(usize, usize)> {
    let l = how.length.as_deref().unwrap_or_default();
    let get = |i: usize, d: usize| match l.get(i) {
        None => Ok(d),
        Some(&v) => usize::try_from(v)
            .ok()
            .filter(|&n| n <= MAX_LENGTH)
            .with_context(|| {
                format!("gen: length {v} is not a whole number from 0 to {MAX_LENGTH}")
            }),
    };
    let (lo, hi) = (get(0, 0)?, get(1, 8)?);
    if hi < lo {
        bail!("gen: length max < min");
    }
    Ok((lo, hi))
}

fn generate(spec: &Spec, rows: usize, first_row: u64, rng: &mut Rng) -> anyhow::Result<ArrayRef> {
    let how = &spec.how;
    let dt = spec.field.data_type().clone();
    let name = spec.field.name();
    macro_rules! prim {
        ($t:ty, $int:expr) => {{
            let xs = numbers(how, rows, first_row, rng, $int)
                .with_context(|| format!("field {name:?}"))?;
            // `as` from f64 saturates at the type's range: exactly what a generator wants.
            let values: ScalarBuffer<<$t as ArrowPrimitiveType>::Native> = xs
                .iter()
                .map(|&x| x as <$t as ArrowPrimitiveType>::Native)
                .collect();
            Arc::new(
                PrimitiveArray::<$t>::new(values, nulls(spec, rows, rng))
                    .with_data_type(dt.clone()),
            ) as ArrayRef
        }};
    }
    Ok(match &dt {
        DataType::Boolean => {
            let p = how.p.unwrap_or(0.5);
            let values: Vec<bool> = (0..rows).map(|_| rng.unit() < p).collect();
            Arc::new(BooleanArray::new(values.into(), nulls(spec, rows, rng)))
        }
        DataType::Int8 => prim!(Int8Type, true),
        DataType::Int16 => prim!(Int16Type, true),
        DataType::Int32 => prim!(Int32Type, true),
        DataType::Int64 => prim!(Int64Type, true),
        DataType::UInt8 => prim!(UInt8Type, true),
        DataType::UInt16 => prim!(UInt16Type, true),
        DataType::UInt32 => prim!(UInt32Type, true),
        DataType::UInt64 => prim!(UInt64Type, true),
        DataType::Float16 => {
            let xs = numbers(how, rows, first_row, rng, false)?;
            let values: ScalarBuffer<half::f16> =
                xs.iter().map(|&x| half::f16::from_f64(x)).collect();
            Arc::new(Float16Array::new(values, nulls(spec, rows, rng)))
        }
        DataType::Float32 => prim!(Float32Type, false),
        DataType::Float64 => prim!(Float64Type, false),
        DataType::Date32 => prim!(Date32Type, true),
        DataType::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondType, true),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondType, true),
        DataType::Timestamp(TimeUnit::Microsecond, _) => prim!(TimestampMicrosecondType, true),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => prim!(TimestampNanosecondType, true),
        DataType::Duration(TimeUnit::Second) => prim!(DurationSecondType, true),
        DataType::Duration(TimeUnit::Millisecond) => prim!(DurationMillisecondType, true),
        DataType::Duration(TimeUnit::Microsecond) => prim!(DurationMicrosecondType, true),
        DataType::Duration(TimeUnit::Nanosecond) => prim!(DurationNanosecondType, true),
        DataType::Decimal128(..) => prim!(Decimal128Type, true),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary => {
            let s = strings(how, rows, rng).with_context(|| format!("field {name:?}"))?;
            let n = nulls(spec, rows, rng);
            let valid = |i: usize| n.as_ref().is_none_or(|n| n.is_valid(i));
            let items = s
                .iter()
                .enumerate()
                .map(|(i, v)| valid(i).then_some(v.as_str()));
            match dt {
                DataType::Utf8 => Arc::new(StringArray::from_iter(items)) as ArrayRef,
                DataType::LargeUtf8 => Arc::new(LargeStringArray::from_iter(items)),
                _ => Arc::new(BinaryArray::from_iter(items.map(|v| v.map(str::as_bytes)))),
            }
        }
        DataType::Dictionary(index, _) => {
            let dict = values(how).with_context(|| {
                format!("field {name:?}: a dictionary needs \"gen\": {{\"values\": [...]}}")
            })?;
            if dict.is_empty() {
                bail!("field {name:?}: empty dictionary");
            }
            let keys: Vec<u64> = (0..rows).map(|_| rng.below(dict.len() as u64)).collect();
            let n = nulls(spec, rows, rng);
            let values: ArrayRef = Arc::new(StringArray::from(dict));
            macro_rules! dict {
                ($k:ty) => {{
                    let keys = PrimitiveArray::<$k>::new(
                        keys.iter()
                            .map(|&k| k as <$k as ArrowPrimitiveType>::Native)
                            .collect(),
                        n,
                    );
                    Arc::new(DictionaryArray::<$k>::try_new(keys, values)?) as ArrayRef
                }};
            }
            match index.as_ref() {
                DataType::Int8 => dict!(Int8Type),
                DataType::Int16 => dict!(Int16Type),
                DataType::Int32 => dict!(Int32Type),
                DataType::Int64 => dict!(Int64Type),
                DataType::UInt8 => dict!(UInt8Type),
                DataType::UInt16 => dict!(UInt16Type),
                DataType::UInt32 => dict!(UInt32Type),
                _ => dict!(UInt64Type),
            }
        }
        DataType::Struct(fields) => {
            let n = nulls(spec, rows, rng);
            let children = spec
                .children
                .iter()
                .map(|c| generate(c, rows, first_row, rng))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Arc::new(StructArray::try_new(fields.clone(), children, n)?)
        }
        DataType::List(item) | DataType::LargeList(item) => {
            let (lo, hi) = lengths(how).with_context(|| format!("field {name:?}"))?;
            check_batch_values(rows, hi).with_context(|| format!("field {name:?}"))?;
            let lens: Vec<usize> = (0..rows)
                .map(|_| lo + rng.below((hi - lo + 1) as u64) as usize)
                .collect();
            let total: usize = lens.iter().sum();
            let values = generate(&spec.children[0], total, 0, rng)?;
            let n = nulls(spec, rows, rng);
            if matches!(dt, DataType::List(_)) {
                Arc::new(ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::<i32>::from_lengths(lens),
                    values,
                    n,
                )?)
            } else {
                Arc::new(LargeListArray::try_new(
                    item.clone(),
                    OffsetBuffer::<i64>::from_lengths(lens),
                    values,
                    n,
                )?)
            }
        }
        DataType::FixedSizeList(item, size) => {
            let len = usize::try_from(*size).context("negative fixed_size_list size")?;
            let total = check_batch_values(rows, len).with_context(|| format!("field {name:?}"))?;
            let values = generate(&spec.children[0], total, 0, rng)?;
            Arc::new(FixedSizeListArray::try_new(
                item.clone(),
                *size,
                values,
                nulls(spec, rows, rng),
            )?)
        }
        other => bail!("field {name:?}: cannot generate {other}"),
    })
}
