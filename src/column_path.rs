//! Column paths: how reduce, map and the writable segment name a column of a batch.
//!
//! A path is a top-level column name, or `parent.child` (any depth) through struct columns. A
//! top-level name may itself contain dots: an exact match wins.

use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_buffer::NullBuffer;

/// The column a path names in a batch, with the struct columns passed on the way.
pub(crate) struct ColumnAt {
    /// The column's array.
    pub(crate) array: ArrayRef,
    /// The struct columns that hold it, outermost first.
    parents: Vec<ArrayRef>,
}

impl ColumnAt {
    /// The column's nulls with the nulls of every struct level on the way folded in: a null
    /// struct parent nulls its children.
    pub(crate) fn nulls(&self) -> Option<NullBuffer> {
        self.parents
            .iter()
            .chain([&self.array])
            .fold(None, |nulls, a| {
                NullBuffer::union(nulls.as_ref(), a.logical_nulls().as_ref())
            })
    }
}

/// Find `path` in `batch`.
///
/// # Errors
/// The reason the path names no column (for the caller's [`crate::Error::InvalidColumn`]).
pub(crate) fn column_at(batch: &RecordBatch, path: &str) -> Result<ColumnAt, String> {
    if let Some(array) = batch.column_by_name(path) {
        return Ok(ColumnAt {
            array: array.clone(),
            parents: Vec::new(),
        });
    }
    let mut parts = path.split('.');
    let head = parts.next().unwrap_or(path);
    let mut array = batch.column_by_name(head).ok_or("no such column")?.clone();
    let mut parents = Vec::new();
    for part in parts {
        let child = array
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| {
                format!(
                    "{} is not a struct, so it has no field {part:?}",
                    array.data_type()
                )
            })?
            .column_by_name(part)
            .ok_or_else(|| format!("struct has no field {part:?}"))?
            .clone();
        parents.push(std::mem::replace(&mut array, child));
    }
    Ok(ColumnAt { array, parents })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int32Array};
    use arrow_buffer::NullBuffer;
    use arrow_schema::{DataType, Field, Fields};

    use super::*;

    fn batch() -> RecordBatch {
        let inner = Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0)])) as ArrayRef;
        let fields = Fields::from(vec![Field::new("v", DataType::Float64, true)]);
        let s = StructArray::new(
            fields,
            vec![inner],
            Some(NullBuffer::from(vec![true, true, false])),
        );
        RecordBatch::try_from_iter([
            ("p", Arc::new(s) as ArrayRef),
            ("a.b", Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn a_struct_path_folds_the_parents_nulls() {
        let found = column_at(&batch(), "p.v").unwrap();
        assert_eq!(found.array.data_type(), &DataType::Float64);
        let nulls = found.nulls().unwrap();
        assert_eq!(nulls.iter().collect::<Vec<_>>(), [true, false, false]);
    }

    #[test]
    fn an_exact_dotted_name_wins() {
        let found = column_at(&batch(), "a.b").unwrap();
        assert_eq!(found.array.data_type(), &DataType::Int32);
        assert!(found.nulls().is_none());
    }

    #[test]
    fn a_wrong_path_says_why() {
        let b = batch();
        let reason = |path| column_at(&b, path).err().unwrap();
        assert_eq!(reason("nope"), "no such column");
        assert_eq!(reason("p.w"), "struct has no field \"w\"");
        assert_eq!(
            reason("p.v.x"),
            "Float64 is not a struct, so it has no field \"x\""
        );
        assert_eq!(reason("p."), "struct has no field \"\"");
    }
}
