//! `shmarrow._shmarrow`: the Python binding. Thin: every operation is the Rust library's own;
//! arrays cross into pyarrow through the Arrow C stream interface without copying, and the
//! exported buffers keep the segment's mapping alive.
#![forbid(unsafe_code)]

use arrow_array::ffi_stream::RecordBatchStreamReader;
use arrow_array::{Array, RecordBatchIterator, RecordBatchReader, UInt8Array};
use arrow_pyarrow::{PyArrowType, ToPyArrow};
use arrow_schema::SchemaRef;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shmarrow::partition::{ProcessOptions, ReduceTask, reduce_by_processes};
use shmarrow::reduce::{Number, Op, Partial, ReduceOptions, Stats, merge_in_order};
use shmarrow::{
    AttachOptions, Attachment, ChannelError as ChannelFailure, CheckedSegment, Constant,
    CreateOptions, Error, Lifetime, MapOp, MapOptions, SegmentDir, Validate,
};

// Module `shmarrow`: the classes are re-exported there, so `pickle` (and with it a
// ProcessPoolExecutor sending a worker's exception back) finds them by name.
create_exception!(
    shmarrow,
    ShmarrowError,
    PyException,
    "Base class of shmarrow's errors; `.name` is the segment concerned (None if none)."
);
create_exception!(
    shmarrow,
    NotAFile,
    ShmarrowError,
    "Something other than a regular file is at the segment's name."
);
create_exception!(
    shmarrow,
    CorruptSegment,
    ShmarrowError,
    "The segment's bytes are not a valid Arrow IPC file."
);
create_exception!(
    shmarrow,
    NotZeroCopy,
    ShmarrowError,
    "Reading would need a copy (strict mode, or a column that cannot be viewed in place)."
);
create_exception!(
    shmarrow,
    InvalidTable,
    ShmarrowError,
    "The data cannot be published as a segment."
);
create_exception!(
    shmarrow,
    ChannelError,
    ShmarrowError,
    "A channel operation failed (producer died, timeout, batch too large, ...)."
);

/// The errors that are also Python's own, so that code catching `FileNotFoundError`,
/// `PermissionError`, `ValueError`... catches them. `create_exception!` takes one base; these
/// are made once per interpreter as `type(name, (shmarrow_base, builtin), {...})`.
#[derive(Clone, Copy)]
enum Dual {
    SegmentNotFound,
    SegmentExists,
    AccessDenied,
    NoSpace,
    InvalidName,
    InvalidColumn,
    ChannelTimeout,
    MapOverflow,
}

impl Dual {
    const ALL: [Dual; 8] = [
        Dual::SegmentNotFound,
        Dual::SegmentExists,
        Dual::AccessDenied,
        Dual::NoSpace,
        Dual::InvalidName,
        Dual::InvalidColumn,
        Dual::ChannelTimeout,
        Dual::MapOverflow,
    ];

    /// Name, docstring and errno name (OSError subclasses are built as `cls(errno, message)`,
    /// so `.errno` and `.strerror` are set as on Python's own; None: `cls(message)`).
    fn spec(self) -> (&'static str, &'static str, Option<&'static str>) {
        match self {
            Dual::SegmentNotFound => (
                "SegmentNotFound",
                "No segment of that name (or no longer the version a reference names). Also a FileNotFoundError.",
                Some("ENOENT"),
            ),
            Dual::SegmentExists => (
                "SegmentExists",
                "A segment of that name exists (replace=False). Also a FileExistsError.",
                Some("EEXIST"),
            ),
            Dual::AccessDenied => (
                "AccessDenied",
                "The operating system refused access to the segment. Also a PermissionError.",
                Some("EACCES"),
            ),
            Dual::NoSpace => (
                "NoSpace",
                "The segment directory cannot hold the segment; nothing was written. An OSError \
                 with errno ENOSPC; `.needed` is the segment's size in bytes.",
                Some("ENOSPC"),
            ),
            Dual::InvalidName => (
                "InvalidName",
                "The segment name breaks the naming rule. Also a ValueError.",
                None,
            ),
            Dual::InvalidColumn => (
                "InvalidColumn",
                "No column of that name, or one of a type the operation does not support. Also \
                 a ValueError; `.column` is the column asked for.",
                None,
            ),
            Dual::ChannelTimeout => (
                "ChannelTimeout",
                "A channel wait timed out. A ChannelError and a TimeoutError.",
                Some("ETIMEDOUT"),
            ),
            Dual::MapOverflow => (
                "MapOverflow",
                "An integer map_inplace whose results would not fit the column's type; nothing \
                 was written (wrap=True wraps around as NumPy does). Also an OverflowError; \
                 `.column` is the column.",
                None,
            ),
        }
    }

    fn bases(self, py: Python<'_>) -> (Bound<'_, PyType>, Bound<'_, PyType>) {
        use pyo3::exceptions as e;
        let shmarrow = py.get_type::<ShmarrowError>();
        match self {
            Dual::SegmentNotFound => (shmarrow, py.get_type::<e::PyFileNotFoundError>()),
            Dual::SegmentExists => (shmarrow, py.get_type::<e::PyFileExistsError>()),
            Dual::AccessDenied => (shmarrow, py.get_type::<e::PyPermissionError>()),
            Dual::NoSpace => (shmarrow, py.get_type::<e::PyOSError>()),
            Dual::InvalidName | Dual::InvalidColumn => (shmarrow, py.get_type::<e::PyValueError>()),
            Dual::ChannelTimeout => (
                py.get_type::<ChannelError>(),
                py.get_type::<e::PyTimeoutError>(),
            ),
            Dual::MapOverflow => (shmarrow, py.get_type::<e::PyOverflowError>()),
        }
    }

    fn type_object(self, py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
        static TYPES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();
        let types = TYPES.get_or_try_init(py, || {
            Dual::ALL
                .iter()
                .map(|dual| {
                    let (name, doc, _) = dual.spec();
                    let dict = PyDict::new(py);
                    dict.set_item("__module__", "shmarrow")?;
                    dict.set_item("__doc__", doc)?;
                    let made = py
                        .get_type::<PyType>()
                        .call1((name, dual.bases(py), dict))?;
                    Ok::<_, PyErr>(made.cast_into::<PyType>()?.unbind())
                })
                .collect::<PyResult<Vec<_>>>()
        })?;
        Ok(types[self as usize].bind(py))
    }

    /// An instance carrying `message` (and the errno, for OSError subclasses).
    fn instance<'py>(self, py: Python<'py>, message: String) -> PyResult<Bound<'py, PyAny>> {
        let ty = self.type_object(py)?;
        match self.spec().2 {
            Some(errno) => {
                let code = py.import("errno")?.getattr(errno)?;
                ty.call1((code, message))
            }
            None => ty.call1((message,)),
        }
    }
}

/// The Python exception for `err`: the class that says what happened, carrying `.name` (the
/// segment), and `.needed` (NoSpace) or `.column` (InvalidColumn).
fn to_py(err: Error) -> PyErr {
    // The message with its causes: "permission denied for segment \"x\": Permission denied (os error 13)".
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        msg = format!("{msg}: {cause}");
        source = cause.source();
    }
    Python::attach(|py| exception(py, &err, msg).unwrap_or_else(|failed| failed))
}

fn exception(py: Python<'_>, err: &Error, msg: String) -> PyResult<PyErr> {
    let plain = |e: PyErr| e.into_value(py).into_bound(py).into_any();
    let (value, name) = match err {
        Error::NotFound { name, .. } => (Dual::SegmentNotFound.instance(py, msg)?, Some(name)),
        // No segment is found there either; the message says the directory is missing.
        Error::NoDirectory { name, .. } => {
            (Dual::SegmentNotFound.instance(py, msg)?, name.as_ref())
        }
        Error::Exists { name, .. } => (Dual::SegmentExists.instance(py, msg)?, Some(name)),
        Error::NoSpace { name, needed, .. } => {
            let value = Dual::NoSpace.instance(py, msg)?;
            value.setattr("needed", needed)?;
            (value, Some(name))
        }
        // Structure-only validation refused: other users can write the file.
        Error::PermissionDenied { name, .. } | Error::Untrusted { name, .. } => {
            (Dual::AccessDenied.instance(py, msg)?, Some(name))
        }
        Error::InvalidName { name, .. } => (Dual::InvalidName.instance(py, msg)?, Some(name)),
        // A constant the column cannot take is a ValueError about that column.
        Error::InvalidColumn { name, column, .. } | Error::InvalidConstant { name, column, .. } => {
            let value = Dual::InvalidColumn.instance(py, msg)?;
            value.setattr("column", column)?;
            (value, Some(name))
        }
        Error::Overflow { name, column, .. } => {
            let value = Dual::MapOverflow.instance(py, msg)?;
            value.setattr("column", column)?;
            (value, Some(name))
        }
        Error::InvalidRows { name, .. } => (
            plain(pyo3::exceptions::PyValueError::new_err(msg)),
            Some(name),
        ),
        Error::NotAFile { name, .. } => (plain(NotAFile::new_err(msg)), Some(name)),
        Error::Corrupt { name, .. } => (plain(CorruptSegment::new_err(msg)), Some(name)),
        Error::NotZeroCopy { name, .. } => (plain(NotZeroCopy::new_err(msg)), Some(name)),
        Error::InvalidTable { name, .. } => (plain(InvalidTable::new_err(msg)), Some(name)),
        Error::Channel {
            name,
            source: ChannelFailure::Timeout(_) | ChannelFailure::NotCreated(_),
        } => (Dual::ChannelTimeout.instance(py, msg)?, Some(name)),
        Error::Channel {
            name,
            source: ChannelFailure::InvalidOptions(_),
        } => (
            plain(pyo3::exceptions::PyValueError::new_err(msg)),
            Some(name),
        ),
        Error::Channel { name, .. } | Error::IsChannel { name } => {
            (plain(ChannelError::new_err(msg)), Some(name))
        }
        _ => (plain(ShmarrowError::new_err(msg)), None),
    };
    if let Some(name) = name {
        value.setattr("name", name)?;
    }
    Ok(PyErr::from_value(value))
}

fn segment_dir(dir: Option<std::path::PathBuf>) -> SegmentDir {
    dir.map_or_else(SegmentDir::from_env, SegmentDir::new)
}

/// (device, inode) of a segment's file: one published version of a name.
type Identity = (u64, u64);

/// Attach segment `name`; returns the pyarrow.Table of its zero-copy batches and the (device,
/// inode) identity of the file mapped. A segment whose batches pyarrow reads in place exactly
/// as attach checked them ([`Attachment::Checked`]) is read by pyarrow from the mapping (see
/// [`read_in_place`]); any other is decoded in Rust and its batches handed over through one
/// Arrow C stream.
#[pyfunction]
#[pyo3(signature = (name, *, dir=None, strict=false, validate="auto"))]
fn attach<'py>(
    py: Python<'py>,
    name: &str,
    dir: Option<std::path::PathBuf>,
    strict: bool,
    validate: &str,
) -> PyResult<(Bound<'py, PyAny>, Identity)> {
    let options = attach_options(strict, validate)?;
    let dir = segment_dir(dir);
    let attached = py
        .detach(|| dir.attach_checked(name, &options, read_in_place_pays))
        .map_err(to_py)?;
    match attached {
        Attachment::Checked(checked) => Ok((read_in_place(py, &checked)?, checked.info().identity)),
        Attachment::Decoded(segment) => {
            let (schema, identity) = (segment.schema(), segment.info().identity);
            // The reader hands out the segment's own batches one by one (no copy of the list).
            let batches =
                (0..segment.batches().len()).map(move |i| Ok(segment.batches()[i].clone()));
            let reader: Box<dyn RecordBatchReader + Send> =
                Box::new(RecordBatchIterator::new(batches, schema));
            let reader = PyArrowType(reader).into_pyobject(py)?;
            Ok((reader.call_method0(intern!(py, "read_all"))?, identity))
        }
    }
}

/// Whether pyarrow reading the batches in place ([`read_in_place`]) beats the Rust decoder and
/// the C stream for a segment of `schema` in `batches` batches: it saves work per column (each
/// array built once, the schema exported once per footer) and costs some per batch (a Python
/// call) and per attach (pyarrow reads the message headers through the mapping, faulting its
/// pages in, where the Rust attach reads them from private copies of the file's ends).
fn read_in_place_pays(schema: &arrow_schema::Schema, batches: usize) -> bool {
    let columns = schema.fields().len();
    columns >= IN_PLACE_COLUMNS && batches <= columns
}

/// The fewest columns for which [`read_in_place_pays`].
const IN_PLACE_COLUMNS: usize = 16;

/// The table of `checked`, read by pyarrow (`pyarrow.ipc.read_record_batch` of each batch's
/// message as it lies in the mapping, against the segment's schema): the very arrays the Rust
/// decoder would make (that is what [`Attachment::Checked`] promises), without building them
/// twice, nor exporting and importing the schema again for a footer seen before
/// ([`pyarrow_schema`]). The mapping crosses as one pyarrow buffer (the values of a UInt8
/// array, through the C data interface); every buffer pyarrow makes is a slice of it, and so
/// keeps the mapping alive.
fn read_in_place<'py>(py: Python<'py>, checked: &CheckedSegment) -> PyResult<Bound<'py, PyAny>> {
    static READ_BATCH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static TABLE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let bytes = UInt8Array::new(checked.bytes().clone().into(), None);
    let bytes = (bytes.into_data().to_pyarrow(py)?)
        .call_method0(intern!(py, "buffers"))?
        .get_item(1)?;
    let read_batch = READ_BATCH.import(py, "pyarrow.ipc", "read_record_batch")?;
    let table = TABLE.import(py, "pyarrow", "Table")?;
    let schema = pyarrow_schema(py, &checked.info().schema)?;
    static ARROW_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let arrow_error = ARROW_ERROR.import(py, "pyarrow.lib", "ArrowException")?;
    let slice = intern!(py, "slice");
    let name = &checked.info().name;
    let batches = (checked.messages().iter().enumerate())
        .map(|(i, m)| {
            let message = bytes.call_method1(slice, (m.start, m.len()))?;
            // A message pyarrow refuses after the Rust checks passed (it also refuses metadata
            // versions, and its flatbuffer verifier is stricter): the segment is corrupt, as
            // attach says of every other refused file, not a pyarrow error.
            read_batch.call1((message, &schema)).map_err(|e| {
                let value = e.value(py);
                if !value.is_instance(arrow_error).unwrap_or(false)
                    && !value.is_instance_of::<pyo3::exceptions::PyOSError>()
                {
                    return e;
                }
                to_py(Error::Corrupt {
                    name: name.clone(),
                    reason: format!("batch {i}: {value}"),
                })
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    table.call_method1(intern!(py, "from_batches"), (batches, schema))
}

/// The pyarrow schemas exported most recently, by the Rust schema they came from (the very
/// `Arc`: attach reuses the schema of a footer it verified before, byte for byte the same), most
/// recently used first; at most [`PYARROW_SCHEMAS`]. Each entry holds its Rust schema, so no
/// other schema can take its address.
static SCHEMAS: Mutex<VecDeque<(SchemaRef, Py<PyAny>)>> = Mutex::new(VecDeque::new());
/// How many schemas [`SCHEMAS`] keeps.
const PYARROW_SCHEMAS: usize = 16;

/// `schema` as a pyarrow.Schema: the one exported before for this very `Arc` ([`SCHEMAS`]),
/// else exported now.
fn pyarrow_schema<'py>(py: Python<'py>, schema: &SchemaRef) -> PyResult<Bound<'py, PyAny>> {
    let cache = || SCHEMAS.lock().unwrap_or_else(PoisonError::into_inner);
    {
        let mut cache = cache();
        let found = cache.iter().position(|(s, _)| Arc::ptr_eq(s, schema));
        if let Some(hit) = found.and_then(|i| cache.remove(i)) {
            let exported = hit.1.clone_ref(py).into_bound(py);
            cache.push_front(hit);
            return Ok(exported);
        }
    }
    let exported = schema.as_ref().to_pyarrow(py)?;
    let evicted = {
        let mut cache = cache();
        cache.push_front((schema.clone(), exported.clone().unbind()));
        let keep = cache.len().min(PYARROW_SCHEMAS);
        cache.split_off(keep)
    };
    drop(evicted); // outside the lock
    Ok(exported)
}

/// The options `attach` and `column_view` take: `validate` parsed.
fn attach_options(strict: bool, validate: &str) -> PyResult<AttachOptions> {
    let validate: Validate = validate
        .parse()
        .map_err(pyo3::exceptions::PyValueError::new_err)?;
    Ok(AttachOptions::default().strict(strict).validate(validate))
}

/// Attach segment `name` (the GIL released meanwhile), `validate` parsed as `attach` takes it.
fn attach_segment(
    py: Python<'_>,
    name: &str,
    dir: Option<std::path::PathBuf>,
    strict: bool,
    validate: &str,
) -> PyResult<shmarrow::Segment> {
    let options = attach_options(strict, validate)?;
    let dir = segment_dir(dir);
    py.detach(|| dir.attach_with(name, &options)).map_err(to_py)
}

/// Zero-copy, read-only NumPy views of column `column` (a name, or an index counted from the
/// end if negative) of segment `name`, one per batch: attached in Rust, no pyarrow objects.
/// Each view's `base` is a [`ColumnPart`] holding the column, and so the mapping.
#[pyfunction]
#[pyo3(signature = (name, column, *, dir=None, validate="auto"))]
fn column_view<'py>(
    py: Python<'py>,
    name: &str,
    column: &Bound<'py, PyAny>,
    dir: Option<std::path::PathBuf>,
    validate: &str,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let key = ColumnKey::from_py(column)?;
    let segment = attach_segment(py, name, dir, false, validate)?;
    let schema = segment.schema();
    let index = key.index(&schema).ok_or_else(|| {
        to_py(Error::InvalidColumn {
            name: name.to_owned(),
            column: key.to_string(),
            reason: format!("no such column (the segment has {})", schema.fields().len()),
        })
    })?;
    let field = schema.field(index);
    let no_view = |why: String| {
        let err = NotZeroCopy::new_err(format!(
            "segment {name:?}: column {:?} ({}) cannot be viewed without a copy: {why}",
            field.name(),
            field.data_type()
        ));
        err.value(py).setattr("name", name)?;
        Ok::<_, PyErr>(err)
    };
    let Some(typestr) = numpy_typestr(field.data_type()) else {
        return Err(no_view("NumPy has no view of this type".into())?);
    };
    let width = field.data_type().primitive_width().unwrap_or(1);
    static ASARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let asarray = ASARRAY.import(py, "numpy", "asarray")?;
    segment
        .batches()
        .iter()
        .enumerate()
        .map(|(i, batch)| {
            let array = batch.column(index);
            let data = array.to_data();
            if data.null_count() > 0 {
                return Err(no_view(format!(
                    "batch {i} has {} nulls",
                    data.null_count()
                ))?);
            }
            if !segment.contains(&data) {
                return Err(no_view(format!(
                    "batch {i} was copied out of the mapping (compressed or misaligned in the file)"
                ))?);
            }
            let address = data.buffers()[0].as_ptr() as usize + data.offset() * width;
            let part = ColumnPart {
                _array: array.clone(),
                address,
                rows: data.len(),
                typestr: typestr.clone(),
            };
            asarray.call1((part,))
        })
        .collect()
}

/// A column given by name or by index (negative: from the end), as `pyarrow.Table.column`
/// takes it.
enum ColumnKey {
    Name(String),
    /// `None`: an integer too large for `i64`, which names no column.
    Index(Option<i64>),
}

impl ColumnKey {
    fn from_py(column: &Bound<'_, PyAny>) -> PyResult<Self> {
        if column.is_instance_of::<pyo3::types::PyString>() {
            return Ok(Self::Name(column.extract()?));
        }
        if column.is_instance_of::<pyo3::types::PyInt>()
            && !column.is_instance_of::<pyo3::types::PyBool>()
        {
            return Ok(Self::Index(column.extract::<i64>().ok()));
        }
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "column must be a str or an int, not {:?}",
            column.get_type().name()?.to_string()
        )))
    }

    fn index(&self, schema: &arrow_schema::Schema) -> Option<usize> {
        let n = schema.fields().len();
        match *self {
            Self::Name(ref name) => schema.index_of(name).ok(),
            Self::Index(Some(i)) if i < 0 => n.checked_sub(usize::try_from(i.unsigned_abs()).ok()?),
            Self::Index(Some(i)) => usize::try_from(i).ok().filter(|&i| i < n),
            Self::Index(None) => None,
        }
    }
}

impl std::fmt::Display for ColumnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Index(Some(i)) => write!(f, "{i}"),
            Self::Index(None) => f.write_str("(an integer beyond 64 bits)"),
        }
    }
}

/// NumPy's type string of the values of a column of `data_type` when NumPy can view them in
/// place (as `pyarrow.Array.to_numpy(zero_copy_only=True)` does), in native byte order.
fn numpy_typestr(data_type: &arrow_schema::DataType) -> Option<String> {
    use arrow_schema::{DataType as T, TimeUnit};
    let unit = |u: &TimeUnit| match u {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    };
    let code = match data_type {
        T::Int8 | T::Int16 | T::Int32 | T::Int64 => format!("i{}", data_type.primitive_width()?),
        T::UInt8 | T::UInt16 | T::UInt32 | T::UInt64 => {
            format!("u{}", data_type.primitive_width()?)
        }
        T::Float16 | T::Float32 | T::Float64 => format!("f{}", data_type.primitive_width()?),
        T::Timestamp(u, _) => format!("M8[{}]", unit(u)),
        T::Duration(u) => format!("m8[{}]", unit(u)),
        _ => return None,
    };
    let order = if cfg!(target_endian = "little") {
        '<'
    } else {
        '>'
    };
    Some(format!("{order}{code}"))
}

/// One batch of a column as NumPy sees it (`__array_interface__`, read-only): the base of the
/// array `column_view` returns, holding the column's arrow array and with it the mapping.
#[pyclass(module = "shmarrow._shmarrow", frozen)]
struct ColumnPart {
    _array: arrow_array::ArrayRef,
    address: usize,
    rows: usize,
    typestr: String,
}

#[pymethods]
impl ColumnPart {
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("version", 3)?;
        dict.set_item("shape", (self.rows,))?;
        dict.set_item("typestr", &self.typestr)?;
        dict.set_item("data", (self.address, true))?;
        Ok(dict)
    }
}

/// A segment this process created; `close()` (or leaving a `with` block, or garbage
/// collection) removes an `owner`-lifetime segment. A persistent one stays.
#[pyclass(module = "shmarrow._shmarrow")]
struct Created {
    inner: Option<shmarrow::Created>,
    /// The creating process: a forked child holds a copy of this handle, not the segment.
    pid: u32,
    /// (device, inode) of the published file.
    #[pyo3(get)]
    identity: Identity,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    path: String,
    #[pyo3(get)]
    nbytes: u64,
    #[pyo3(get)]
    lifetime: String,
}

#[pymethods]
impl Created {
    /// Release the handle (removes an `owner` segment, in the process that created it only).
    fn close(&mut self) {
        if let Some(created) = self.inner.take()
            && std::process::id() != self.pid
        {
            created.disown();
        }
    }

    /// Keep the segment after this handle goes; `gc` reclaims an `owner` one once this
    /// process has exited.
    fn disown(&mut self) {
        if let Some(created) = self.inner.take() {
            created.disown();
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&mut self, _ty: Py<PyAny>, _value: Py<PyAny>, _tb: Py<PyAny>) -> bool {
        self.close();
        false
    }

    /// Pickles as a `shmarrow.Shared` reference to this version (name, directory, identity):
    /// the receiving process attaches it; only this handle removes an `owner` segment.
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (String, String, Identity))> {
        let dir = std::path::Path::new(&self.path)
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shared = py.import("shmarrow")?.getattr("Shared")?;
        Ok((shared, (self.name.clone(), dir, self.identity)))
    }

    fn __repr__(&self) -> String {
        format!(
            "Created(name={:?}, nbytes={}, lifetime={:?}, open={})",
            self.name,
            self.nbytes,
            self.lifetime,
            self.inner.is_some()
        )
    }
}

/// Publish `data` (anything with `__arrow_c_stream__`: a pyarrow Table or RecordBatchReader)
/// as segment `name`, atomically, through the Rust writer (64-byte aligned, one pass).
#[pyfunction]
#[pyo3(signature = (name, data, *, dir=None, replace=true, mode=0o600, lifetime="persistent"))]
fn create(
    py: Python<'_>,
    name: &str,
    data: PyArrowType<RecordBatchStreamReader>,
    dir: Option<std::path::PathBuf>,
    replace: bool,
    mode: i64,
    lifetime: &str,
) -> PyResult<Created> {
    let options = create_options(replace, mode, lifetime)?;
    let reader = data.0;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InvalidTable::new_err(e.to_string()))?;
    // The C stream import trusts its producer; shmarrow validates what it publishes, so that
    // readers may trust its segments (the trust model, SECURITY.md).
    py.detach(|| {
        batches
            .iter()
            .flat_map(|batch| batch.columns())
            .try_for_each(|column| column.to_data().validate_full())
    })
    .map_err(|e| InvalidTable::new_err(format!("invalid data for segment {name:?}: {e}")))?;
    let dir = segment_dir(dir);
    let created = py
        .detach(|| dir.create(name, &schema, &batches, &options))
        .map_err(to_py)?;
    Ok(wrap_created(created))
}

impl Drop for Created {
    fn drop(&mut self) {
        self.close();
    }
}

fn wrap_created(created: shmarrow::Created) -> Created {
    Created {
        pid: std::process::id(),
        identity: created.identity(),
        name: created.name().to_owned(),
        path: created.path().to_string_lossy().into_owned(),
        nbytes: created.bytes(),
        lifetime: created.lifetime().to_string(),
        inner: Some(created),
    }
}

fn create_options(replace: bool, mode: i64, lifetime: &str) -> PyResult<CreateOptions> {
    let lifetime: Lifetime = lifetime
        .parse()
        .map_err(pyo3::exceptions::PyValueError::new_err)?;
    if !(0..=0o777).contains(&mode) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "mode {mode:#o} is not between 0o000 and 0o777"
        )));
    }
    Ok(CreateOptions::default()
        .replace(replace)
        .mode(mode as u32)
        .lifetime(lifetime))
}

fn number<'py>(py: Python<'py>, n: Option<Number>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match n {
        Some(Number::Int(i)) => i.into_pyobject(py)?.into_any(),
        Some(Number::Float(f)) => f.into_pyobject(py)?.into_any(),
        None => py.None().into_bound(py),
    })
}

/// Statistics of a segment's numeric columns, in one parallel pass.
///
/// Computed by the Rust kernels with the GIL released; results are identical for any number
/// of threads (fixed chunks merged in order). Nulls are skipped; NaN propagates.
///
/// Parameters
/// ----------
/// name : str
///     The segment's name.
/// columns : list of str, optional
///     Integer or float columns (struct children by dotted path, `"pos.x"`). Default: every
///     numeric column (others are skipped).
/// ops : list of str, optional
///     Among "count", "null_count", "sum", "mean", "var", "std", "min", "max". Default: all.
/// threads : int, optional
///     Worker threads; default one per core.
/// ddof : int, default 0
///     Delta degrees of freedom of `var` and `std`.
/// processes : int, optional
///     Instead of threads, this many worker processes (1 to 256, this interpreter running
///     `shmarrow._worker`) attach the segment by name and each writes the partials of its
///     share of the chunks into a results segment, merged here in chunk order: the lecture's
///     partitioned pattern, with the same result as threads, bit for bit.
/// dir : str or os.PathLike, optional
///     The segment directory; default `$SHMARROW_DIR`, else `/dev/shm`.
///
/// Returns
/// -------
/// dict
///     `{column: {op: value}}`: integer sums, minima and maxima stay exact ints.
///
/// Raises
/// ------
/// InvalidColumn
///     A column that does not exist or is not numeric (also a ValueError).
/// ValueError
///     An unknown op, `threads` or `processes` out of range, or both given.
/// ShmarrowError
///     A worker process failed or was killed (the message names it); there is no result.
/// SegmentNotFound, InvalidName, AccessDenied, CorruptSegment
///     As for `attach`.
#[pyfunction]
#[pyo3(signature = (name, columns=None, ops=None, threads=None, *, ddof=0, processes=None, dir=None))]
#[allow(clippy::too_many_arguments)] // the Python signature
fn reduce<'py>(
    py: Python<'py>,
    name: &str,
    columns: Option<Vec<String>>,
    ops: Option<Vec<String>>,
    threads: Option<usize>,
    ddof: u32,
    processes: Option<usize>,
    dir: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let ops = parse_ops(ops)?;
    let dir = segment_dir(dir);
    let mut options = ReduceOptions::default().ddof(ddof);
    if let Some(t) = thread_count(threads)? {
        options = options.threads(t);
    }
    let columns = columns.unwrap_or_default();
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let stats = match processes {
        None => py.detach(|| dir.attach(name)?.reduce(&refs, &options)),
        Some(p) => {
            if threads.is_some() {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "give threads or processes, not both",
                ));
            }
            let workers = thread_count(Some(p))
                .map_err(|_| {
                    pyo3::exceptions::PyValueError::new_err(format!(
                        "processes={p}: expected 1 to {}",
                        shmarrow::reduce::MAX_THREADS
                    ))
                })?
                .unwrap_or(1);
            let python: std::path::PathBuf = py.import("sys")?.getattr("executable")?.extract()?;
            if python.as_os_str().is_empty() {
                return Err(ShmarrowError::new_err(
                    "processes: this interpreter does not know its executable (sys.executable)",
                ));
            }
            let options = ProcessOptions::default().ddof(ddof);
            py.detach(|| {
                let reduced = reduce_by_processes(&dir, name, &refs, workers, &options, |task| {
                    let mut worker = std::process::Command::new(&python);
                    worker
                        .args(["-m", "shmarrow._worker"])
                        .arg(dir.path())
                        .arg(dir.validation().to_string())
                        .args([&task.name, &task.results])
                        .args([task.worker.to_string(), task.workers.to_string()])
                        .args(&task.columns);
                    worker
                })?;
                Ok(reduced.stats)
            })
        }
    }
    .map_err(to_py)?;
    let out = PyDict::new(py);
    for s in stats {
        out.set_item(&s.column, stats_dict(py, &s, &ops)?)?;
    }
    Ok(out)
}

/// One worker process of `reduce(..., processes=P)` (run by `python -m shmarrow._worker`):
/// reduce worker `worker` of `workers`'s share of `columns` of segment `name` into its rows of
/// results segment `results`.
#[pyfunction]
#[pyo3(signature = (name, results, columns, worker, workers, *, validate, dir))]
#[allow(clippy::too_many_arguments)] // the Python signature
fn _reduce_worker(
    py: Python<'_>,
    name: String,
    results: String,
    columns: Vec<String>,
    worker: usize,
    workers: usize,
    validate: &str,
    dir: std::path::PathBuf,
) -> PyResult<()> {
    let validate = validate
        .parse()
        .map_err(pyo3::exceptions::PyValueError::new_err)?;
    let dir = SegmentDir::new(dir).validate(validate);
    let task = ReduceTask {
        name,
        results,
        columns,
        worker,
        workers,
    };
    py.detach(|| task.run(&dir)).map_err(to_py)
}

fn parse_ops(ops: Option<Vec<String>>) -> PyResult<Vec<Op>> {
    match ops {
        None => Ok(Op::ALL.to_vec()),
        Some(ops) => ops
            .iter()
            .map(|o| o.parse().map_err(pyo3::exceptions::PyValueError::new_err))
            .collect(),
    }
}

/// `{op: value}` of one column's statistics, as `reduce` returns them.
fn stats_dict<'py>(py: Python<'py>, s: &Stats, ops: &[Op]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for op in ops {
        d.set_item(op.name(), number(py, s.get(*op))?)?;
    }
    Ok(d)
}

/// One chunk's mergeable state as a plain tuple (it pickles, and crosses Dask as is):
/// `(count, null_count, sum, sum_low, mean, mean_low, m2, min, max, nan)`.
type PartialTuple = (
    u64,
    u64,
    NumberArg,
    f64,
    f64,
    f64,
    f64,
    Option<NumberArg>,
    Option<NumberArg>,
    bool,
);

/// A Python int (exact, up to 128 bits) or float, as a reduction's sum, min or max.
#[derive(FromPyObject, IntoPyObject)]
enum NumberArg {
    Int(i128),
    Float(f64),
}

impl From<Number> for NumberArg {
    fn from(n: Number) -> Self {
        match n {
            Number::Int(i) => NumberArg::Int(i),
            Number::Float(f) => NumberArg::Float(f),
        }
    }
}

impl From<NumberArg> for Number {
    fn from(n: NumberArg) -> Self {
        match n {
            NumberArg::Int(i) => Number::Int(i),
            NumberArg::Float(f) => Number::Float(f),
        }
    }
}

/// The per-chunk partial statistics of a segment's columns, for merging elsewhere with
/// `merge_partials` (what `shmarrow.dask.reduce` moves between hosts).
///
/// Returns a list of `(column, is_int, [partial, ...])`, one per column in the order `reduce`
/// reports them, with one partial tuple per 32 Ki-row chunk, in chunk order.
#[pyfunction]
#[pyo3(signature = (name, columns=None, threads=None, *, dir=None))]
fn reduce_partials(
    py: Python<'_>,
    name: &str,
    columns: Option<Vec<String>>,
    threads: Option<usize>,
    dir: Option<std::path::PathBuf>,
) -> PyResult<Vec<(String, bool, Vec<PartialTuple>)>> {
    let threads = thread_count(threads)?;
    let dir = segment_dir(dir);
    let columns = columns.unwrap_or_default();
    let found = py
        .detach(|| {
            let segment = dir.attach(name)?;
            let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
            segment
                .reduce_columns(&refs)
                .into_iter()
                .map(|c| {
                    let (int, partials) = segment.chunk_partials(&c, 0..usize::MAX, threads)?;
                    Ok((c, int, partials))
                })
                .collect::<shmarrow::Result<Vec<_>>>()
        })
        .map_err(to_py)?;
    Ok(found
        .into_iter()
        .map(|(c, int, partials)| {
            let tuples = partials
                .into_iter()
                .map(|p| {
                    (
                        p.count,
                        p.null_count,
                        p.sum.into(),
                        p.sum_low,
                        p.mean,
                        p.mean_low,
                        p.m2,
                        p.min.map(Into::into),
                        p.max.map(Into::into),
                        p.nan,
                    )
                })
                .collect();
            (c, int, tuples)
        })
        .collect())
}

/// Merge chunk partials from `reduce_partials` in the order given, into the statistics
/// `reduce` reports for one column (`{op: value}`). Merging the partials of several segments,
/// segment after segment, equals `reduce` of one segment holding their batches in that order.
///
/// Raises TypeError for partials that are not tuples of the documented shape, ValueError for
/// an unknown op.
#[pyfunction]
#[pyo3(signature = (column, is_int, partials, ops=None, *, ddof=0))]
fn merge_partials<'py>(
    py: Python<'py>,
    column: &str,
    is_int: bool,
    partials: Vec<PartialTuple>,
    ops: Option<Vec<String>>,
    ddof: u32,
) -> PyResult<Bound<'py, PyDict>> {
    let ops = parse_ops(ops)?;
    let partials: Vec<Partial> = partials
        .into_iter()
        .map(
            |(count, null_count, sum, sum_low, mean, mean_low, m2, min, max, nan)| Partial {
                count,
                null_count,
                sum: sum.into(),
                sum_low,
                mean,
                mean_low,
                m2,
                min: min.map(Into::into),
                max: max.map(Into::into),
                nan,
            },
        )
        .collect();
    stats_dict(
        py,
        &merge_in_order(is_int, &partials).finish(column, ddof),
        &ops,
    )
}

/// A `map_inplace` constant: Python and NumPy integers stay exact integers (`2**63` is not
/// rounded, `np.int64(1)` is an integer), floats stay floats (`3.0` is not an integer, as in
/// NumPy); bools, strings and anything else are refused.
fn map_constant(a: &Bound<'_, PyAny>) -> PyResult<Constant> {
    let refuse = || {
        let ty = a
            .get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        pyo3::exceptions::PyTypeError::new_err(format!(
            "map constants are ints or floats (Python or NumPy scalars), not {ty}"
        ))
    };
    if a.is_instance_of::<pyo3::types::PyBool>() {
        return Err(refuse());
    }
    if a.is_instance_of::<pyo3::types::PyInt>() {
        return Ok(Constant::from(a.extract::<i128>()?));
    }
    if a.is_instance_of::<pyo3::types::PyFloat>() {
        return Ok(Constant::from(a.extract::<f64>()?));
    }
    // NumPy scalars: np.int64, np.uint64, np.float32, ... (np.bool_ has kind "b").
    let kind = a
        .getattr("dtype")
        .and_then(|d| d.getattr("kind"))
        .and_then(|k| k.extract::<String>())
        .map_err(|_| refuse())?;
    match kind.as_str() {
        "i" | "u" => Ok(Constant::from(
            a.call_method0("__int__")?.extract::<i128>()?,
        )),
        "f" => Ok(Constant::from(
            a.call_method0("__float__")?.extract::<f64>()?,
        )),
        _ => Err(refuse()),
    }
}

/// Transform a fixed-width column of a segment in place.
///
/// Holds the segment's exclusive lock meanwhile (with `rows`, the lock of a writer of those
/// rows; waiting for it without a timeout); runs the Rust code with the GIL released. Readers that attached earlier see the new values; only
/// values change, never lengths, validity or null counts. Integer results that would not fit
/// the column's type raise MapOverflow before any value is written, unless `wrap=True`.
///
/// Parameters
/// ----------
/// name : str
///     The segment's name.
/// column : str
///     A fixed-width integer or float column (dotted path for struct children).
/// op : str
///     "square", "scale" (one constant K), "add" (K) or "clip" (LO, HI).
/// *args : int or float
///     The op's constants: Python or NumPy integers stay exact integers, floats stay floats
///     (integer columns need integers; bools and strings are refused).
/// threads : int, optional
///     Worker threads (1 to 256); default one per core.
/// dir : str or os.PathLike, optional
///     The segment directory; default `$SHMARROW_DIR`, else `/dev/shm`.
/// wrap : bool, optional
///     Let integer results wrap around (two's complement, as NumPy does) instead of raising
///     MapOverflow. Float columns always follow IEEE 754.
/// rows : (int, int), optional
///     Transform rows ``start <= row < stop`` alone (the partitioned pattern: each worker
///     process gives its own range). Instead of the exclusive lock, takes the lock of a writer
///     of these rows: writers of disjoint ranges run at once, while readers holding the shared
///     lock, whole-segment writers and writers of overlapping rows wait for each other.
///
/// Returns
/// -------
/// None
///
/// Raises
/// ------
/// InvalidColumn
///     No such column, one of a type that cannot be written in place, or a constant the
///     column cannot take (`0.5`, NaN or `2**40` for an int32 column); a ValueError.
/// MapOverflow
///     An integer result would not fit (nothing was written); an OverflowError.
/// CorruptSegment
///     The segment's value ranges overlap other buffers: it cannot be written in place.
/// TypeError
///     A constant that is not an int or float.
/// ValueError
///     An unknown op, the wrong number of constants, a bad thread count, or `rows` that are
///     not ``0 <= start <= stop <=`` the segment's rows (negative, reversed, past the end).
/// SegmentNotFound, InvalidName, AccessDenied
///     As for `attach`.
#[allow(clippy::too_many_arguments)] // Python keyword arguments
#[pyfunction]
#[pyo3(signature = (name, column, op, *args, threads=None, dir=None, wrap=false, rows=None))]
fn map_inplace(
    py: Python<'_>,
    name: &str,
    column: &str,
    op: &str,
    args: Vec<Bound<'_, PyAny>>,
    threads: Option<usize>,
    dir: Option<std::path::PathBuf>,
    wrap: bool,
    rows: Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
) -> PyResult<()> {
    let constants = args
        .iter()
        .map(map_constant)
        .collect::<PyResult<Vec<_>>>()?;
    let op = MapOp::new(op, &constants).map_err(pyo3::exceptions::PyValueError::new_err)?;
    let rows = rows
        .map(|(start, stop)| row_bounds(&start, &stop))
        .transpose()?;
    // The mapping is closed right after: each thread releases its own pages as it goes.
    let options = MapOptions::default().wrap(wrap).release(true);
    let dir = segment_dir(dir);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(thread_count(threads)?.unwrap_or(0))
        .build()
        .map_err(|e| ShmarrowError::new_err(format!("start threads: {e}")))?;
    py.detach(|| {
        let writable = dir.open_writable(name)?;
        let (_lock, rows) = match rows {
            Some(rows) => (writable.lock_rows(rows.clone())?, rows),
            None => (writable.lock(false)?, 0..u64::MAX),
        };
        pool.install(|| writable.map_with(column, op, rows, &options))
    })
    .map_err(to_py)
}

/// `rows=(start, stop)`: two non-negative ints (Python or NumPy), as a row range; the check
/// against the segment's rows is the library's (`lock_rows`).
fn row_bounds(start: &Bound<'_, PyAny>, stop: &Bound<'_, PyAny>) -> PyResult<Range<u64>> {
    let bound = |b: &Bound<'_, PyAny>| -> PyResult<u64> {
        let refuse = || {
            pyo3::exceptions::PyValueError::new_err(format!(
                "rows=({start}, {stop}): expected two ints 0 <= start <= stop <= the segment's rows"
            ))
        };
        if b.is_instance_of::<pyo3::types::PyBool>() {
            return Err(refuse());
        }
        b.call_method0("__index__")
            .and_then(|i| i.extract::<u64>())
            .map_err(|_| refuse())
    };
    Ok(bound(start)?..bound(stop)?)
}

/// `threads=`: `None` (one per core) or 1 to [`MAX_THREADS`](shmarrow::reduce::MAX_THREADS).
fn thread_count(threads: Option<usize>) -> PyResult<Option<usize>> {
    use shmarrow::reduce::MAX_THREADS;
    match threads {
        Some(t) if !(1..=MAX_THREADS).contains(&t) => Err(pyo3::exceptions::PyValueError::new_err(
            format!("threads={t}: expected 1 to {MAX_THREADS} (None: one per core)"),
        )),
        t => Ok(t),
    }
}

/// A held `flock` on a segment; released by `release()` or leaving the `with` block.
#[pyclass(module = "shmarrow._shmarrow")]
struct Lock {
    inner: Option<shmarrow::SegmentLock>,
}

#[pymethods]
impl Lock {
    /// Release the lock.
    fn release(&mut self) {
        self.inner = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&mut self, _ty: Py<PyAny>, _value: Py<PyAny>, _tb: Py<PyAny>) -> bool {
        self.release();
        false
    }
}

/// Take a segment's lock: shared, exclusive, or that of a writer of some rows.
///
/// A shared lock suits a reader that needs a stable view while writers wait; an exclusive one
/// a writer whose range may overlap another's. Waits, with the GIL released, until the lock
/// is granted (no timeout); a process that dies releases its locks.
///
/// Parameters
/// ----------
/// name : str
///     The segment's name.
/// shared : bool, default True
///     Shared (readers) or exclusive (writers).
/// dir : str or os.PathLike, optional
///     The segment directory; default `$SHMARROW_DIR`, else `/dev/shm`.
/// rows : (int, int), optional
///     Instead, the lock of a writer of rows ``start <= row < stop`` alone (as
///     ``map_inplace(..., rows=...)`` takes): writers of disjoint ranges hold theirs at once;
///     readers, whole-segment writers and writers of overlapping rows wait. Needs write
///     permission; ``shared`` is ignored.
///
/// Returns
/// -------
/// Lock
///     Held until `release()` or the end of its `with` block.
///
/// Raises
/// ------
/// SegmentNotFound, InvalidName, AccessDenied, NotAFile
///     As for `attach`.
/// ValueError
///     `rows` that are not ``0 <= start <= stop <=`` the segment's rows.
#[pyfunction]
#[pyo3(signature = (name, shared=true, *, dir=None, rows=None))]
fn lock(
    py: Python<'_>,
    name: &str,
    shared: bool,
    dir: Option<std::path::PathBuf>,
    rows: Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
) -> PyResult<Lock> {
    let rows = rows
        .map(|(start, stop)| row_bounds(&start, &stop))
        .transpose()?;
    let dir = segment_dir(dir);
    let held = py
        .detach(|| match rows {
            Some(rows) => dir.open_writable(name)?.lock_rows(rows),
            None => dir.lock(name, shared),
        })
        .map_err(to_py)?;
    Ok(Lock { inner: Some(held) })
}

/// Keeps a writable mapping alive for the NumPy views made from it.
#[pyclass(module = "shmarrow._shmarrow", frozen)]
struct Mapping {
    _owner: Arc<dyn std::fmt::Debug + Send + Sync>,
}

/// A table being filled in place (see `shmarrow.allocate`).
#[pyclass(module = "shmarrow._shmarrow")]
struct Allocation {
    inner: Option<shmarrow::Allocation>,
    name: String,
}

#[pymethods]
impl Allocation {
    /// `(owner, address, elements, arrow type)` of column `column`'s values, for NumPy.
    fn raw(&self, py: Python<'_>, column: &str) -> PyResult<(Py<Mapping>, usize, usize, String)> {
        let alloc = self.inner.as_ref().ok_or_else(|| {
            ShmarrowError::new_err(format!(
                "allocation of {:?} was already published or closed",
                self.name
            ))
        })?;
        let raw = alloc.raw_values(column).map_err(to_py)?;
        let (ptr, len) = raw
            .parts
            .first()
            .copied()
            .unwrap_or((std::ptr::null_mut(), 0));
        let owner = Py::new(py, Mapping { _owner: raw.owner })?;
        Ok((owner, ptr as usize, len, raw.data_type.to_string()))
    }

    /// Publish atomically under the name; returns the Created handle.
    fn publish(&mut self, py: Python<'_>) -> PyResult<Created> {
        let alloc = self.inner.take().ok_or_else(|| {
            ShmarrowError::new_err(format!(
                "allocation of {:?} was already published or closed",
                self.name
            ))
        })?;
        let created = py.detach(|| alloc.publish()).map_err(to_py)?;
        Ok(wrap_created(created))
    }

    /// Drop without publishing: nothing is left behind (NumPy views stay valid memory).
    fn close(&mut self) {
        self.inner = None;
    }
}

/// Lay out `rows` rows of `schema` (fixed-width columns) in a new segment that is not visible
/// until `publish()`.
#[allow(clippy::too_many_arguments)] // Python keyword arguments
#[pyfunction]
#[pyo3(signature = (name, schema, rows, *, dir=None, replace=true, mode=0o600, lifetime="persistent"))]
fn allocate(
    py: Python<'_>,
    name: &str,
    schema: PyArrowType<arrow_schema::Schema>,
    rows: usize,
    dir: Option<std::path::PathBuf>,
    replace: bool,
    mode: i64,
    lifetime: &str,
) -> PyResult<Allocation> {
    let options = create_options(replace, mode, lifetime)?;
    let dir = segment_dir(dir);
    let alloc = py
        .detach(|| dir.allocate(name, &schema.0, rows, &options))
        .map_err(to_py)?;
    Ok(Allocation {
        inner: Some(alloc),
        name: name.to_owned(),
    })
}

/// A timeout in seconds from Python: `None` (or `inf`, or more than a `Duration` holds) waits
/// forever; negative or NaN is a `ValueError`, never a panic.
fn timeout_arg(what: &str, secs: Option<f64>) -> PyResult<Option<Duration>> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_nan() || s < 0.0 => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{what} must be a number of seconds >= 0, or None to wait forever; got {s}"
        ))),
        Some(s) => Ok(Duration::try_from_secs_f64(s).ok()),
    }
}

/// How long one wait runs without the GIL before Python signal handlers (Ctrl-C) get a turn.
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// Run `step` (a wait that gives up after the limit it is given) in slices of at most
/// `SIGNAL_SLICE` until it succeeds, fails otherwise, or `timeout` has passed: a long or endless
/// wait stays interruptible. `timed_out` tells the step's own timeout from other errors.
fn interruptible<T>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut step: impl FnMut(Duration) -> shmarrow::Result<T> + Send,
    timed_out: impl Fn(&Error) -> bool,
) -> PyResult<T>
where
    T: Send,
{
    let started = Instant::now();
    loop {
        let left = timeout.map_or(Duration::MAX, |t| t.saturating_sub(started.elapsed()));
        match py.detach(|| step(left.min(SIGNAL_SLICE))) {
            Err(e) if timed_out(&e) && left > SIGNAL_SLICE => py.check_signals()?,
            Err(e) if timed_out(&e) => {
                // The whole timeout has passed: report it, not the last slice.
                let full = timeout.unwrap_or_default();
                return Err(to_py(match e {
                    Error::Channel {
                        name,
                        source: ChannelFailure::NotCreated(_),
                    } => Error::Channel {
                        name,
                        source: ChannelFailure::NotCreated(full),
                    },
                    Error::Channel { name, .. } => Error::Channel {
                        name,
                        source: ChannelFailure::Timeout(full),
                    },
                    other => other,
                }));
            }
            other => return other.map_err(to_py),
        }
    }
}

fn is_timeout(e: &Error) -> bool {
    matches!(
        e,
        Error::Channel {
            source: ChannelFailure::Timeout(_),
            ..
        }
    )
}

/// A channel subscription: iterate to receive batches (zero-copy pyarrow RecordBatches; each
/// pins its slot while alive). Waits release the GIL and let Ctrl-C through.
#[pyclass(module = "shmarrow._shmarrow")]
struct Subscription {
    inner: Option<shmarrow::Consumer>,
    name: String,
    timeout: Option<Duration>,
    /// Batches missed so far (lossy channels), unreadable slots skipped included.
    #[pyo3(get)]
    missed: u64,
}

#[pymethods]
impl Subscription {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(
        &mut self,
        py: Python<'_>,
    ) -> PyResult<Option<PyArrowType<arrow_array::RecordBatch>>> {
        let Some(consumer) = self.inner.as_mut() else {
            return Ok(None);
        };
        let received = interruptible(
            py,
            self.timeout,
            |slice| {
                consumer.wait_policy().timeout = Some(slice);
                consumer.recv()
            },
            is_timeout,
        );
        self.missed = consumer.missed();
        match received? {
            Some(r) => Ok(Some(PyArrowType(r.batch))),
            None => {
                self.inner = None;
                Ok(None)
            }
        }
    }

    /// The channel's schema.
    #[getter]
    fn schema(&self) -> PyResult<PyArrowType<arrow_schema::Schema>> {
        let consumer = self.inner.as_ref().ok_or_else(|| {
            ShmarrowError::new_err(format!("subscription to {:?} is closed", self.name))
        })?;
        Ok(PyArrowType(consumer.schema().as_ref().clone()))
    }

    /// Leave the channel (batches still alive keep their slots pinned until dropped).
    fn close(&mut self) {
        self.inner = None;
    }
}

/// Subscribe to a channel: receive every batch sent from now on.
///
/// If the channel does not exist yet, wait for it to appear (a consumer started before its
/// producer does).
///
/// Parameters
/// ----------
/// name : str
///     The channel's name.
/// dir : str or os.PathLike, optional
///     The segment directory; default `$SHMARROW_DIR`, else `/dev/shm`.
/// timeout : float, optional
///     Seconds to wait for the channel to appear, then for each next batch, before raising
///     ChannelTimeout; None (default) or inf waits forever. Waits can be interrupted
///     (Ctrl-C).
///
/// Returns
/// -------
/// Subscription
///     Iterate it for zero-copy pyarrow RecordBatches; iteration ends when the producer
///     closes the stream.
///
/// Raises
/// ------
/// ValueError
///     A negative or NaN timeout.
/// ChannelTimeout
///     No channel appeared within `timeout`; (while iterating) no batch within `timeout`
///     (also a TimeoutError).
/// ChannelError
///     Not a channel (a table: use attach), every consumer entry taken, the producer died.
#[pyfunction]
#[pyo3(signature = (name, *, dir=None, timeout=None))]
fn subscribe(
    py: Python<'_>,
    name: &str,
    dir: Option<std::path::PathBuf>,
    timeout: Option<f64>,
) -> PyResult<Subscription> {
    let timeout = timeout_arg("timeout", timeout)?;
    let dir = segment_dir(dir);
    let consumer = interruptible(
        py,
        timeout,
        |slice| dir.subscribe_within(name, Some(slice)),
        |e| {
            matches!(
                e,
                Error::Channel {
                    source: ChannelFailure::NotCreated(_),
                    ..
                }
            )
        },
    )?;
    Ok(Subscription {
        inner: Some(consumer),
        name: name.to_owned(),
        timeout,
        missed: 0,
    })
}

/// The producing end of a channel (see `shmarrow.producer`).
#[pyclass(module = "shmarrow._shmarrow")]
struct Producer {
    inner: Option<shmarrow::Producer>,
    name: String,
    timeout: Option<Duration>,
}

#[pymethods]
impl Producer {
    /// Send one record batch (encoded straight into a slot by the Rust producer). Waits for
    /// space at most the producer's `timeout`.
    fn send(
        &mut self,
        py: Python<'_>,
        batch: PyArrowType<arrow_array::RecordBatch>,
    ) -> PyResult<()> {
        let producer = self.inner.as_mut().ok_or_else(|| {
            ShmarrowError::new_err(format!("producer of {:?} is closed", self.name))
        })?;
        let batch = &batch.0;
        interruptible(
            py,
            self.timeout,
            |slice| {
                producer.wait_policy().timeout = Some(slice);
                producer.send(batch)
            },
            is_timeout,
        )
    }

    /// Live consumers.
    #[getter]
    fn consumers(&self) -> usize {
        self.inner.as_ref().map_or(0, shmarrow::Producer::consumers)
    }

    /// End the stream: consumers get what was sent, then stop. An `owner` channel this
    /// producer created is removed.
    fn close(&mut self) {
        self.inner = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&mut self, _ty: Py<PyAny>, _value: Py<PyAny>, _tb: Py<PyAny>) -> bool {
        self.close();
        false
    }
}

/// Become the producer of a channel, creating it first when a schema is given.
///
/// Parameters
/// ----------
/// name : str
///     The channel's name.
/// schema : pyarrow.Schema, optional
///     Create (or replace) the channel for this schema; None opens an existing one.
/// dir : str or os.PathLike, optional
///     The segment directory; default `$SHMARROW_DIR`, else `/dev/shm`.
/// slots : int, default 8
///     Ring slots (at least 1).
/// slot_size : int, default 16 MiB
///     Bytes per slot, rounded up to 64 (at least 128; 64 of them are the slot header); a
///     larger batch is refused.
/// lossy : bool, default False
///     Overwrite unread slots instead of waiting for the slowest consumer.
/// max_consumers : int, default 16
///     Consumer entries (1 to 4096).
/// timeout : float, optional
///     Seconds `send` waits for a free slot before raising ChannelTimeout; None (default)
///     or inf waits forever. Waits can be interrupted (Ctrl-C).
/// mode : int, default 0o600
///     Permission bits of a created channel.
/// lifetime : {"persistent", "owner"}, default "persistent"
///     Of a created channel: "owner" removes it when the producer closes (or its `with`
///     block ends, or it is garbage-collected), and lets `gc` remove it once this process
///     is dead and no live consumer holds it. Only with `schema`.
///
/// Returns
/// -------
/// Producer
///     `send(batch)`; `close()` (or the end of its `with` block) ends the stream.
///
/// Raises
/// ------
/// ValueError
///     A negative or NaN timeout, `slots=0`, `max_consumers` outside 1..4096, a slot size
///     below 128 or too large for a file, a lifetime without a schema.
/// ChannelError
///     Another live process is the producer, or not a channel.
/// SegmentNotFound, InvalidName, AccessDenied, NoSpace
///     As for `create`.
#[allow(clippy::too_many_arguments)] // Python keyword arguments
#[pyfunction]
#[pyo3(signature = (name, schema=None, *, dir=None, slots=8, slot_size=16 << 20, lossy=false, max_consumers=16, timeout=None, mode=0o600, lifetime="persistent"))]
fn producer(
    py: Python<'_>,
    name: &str,
    schema: Option<PyArrowType<arrow_schema::Schema>>,
    dir: Option<std::path::PathBuf>,
    slots: u32,
    slot_size: u64,
    lossy: bool,
    max_consumers: u32,
    timeout: Option<f64>,
    mode: i64,
    lifetime: &str,
) -> PyResult<Producer> {
    let timeout = timeout_arg("timeout", timeout)?;
    let dir = segment_dir(dir);
    let create = create_options(true, mode, lifetime)?;
    if schema.is_none() && lifetime != "persistent" {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "lifetime applies to a channel this call creates: pass its schema",
        ));
    }
    let producer = py
        .detach(|| match &schema {
            Some(schema) => {
                let options = shmarrow::ChannelOptions::default()
                    .slots(slots)
                    .slot_size(slot_size)
                    .lossy(lossy)
                    .max_consumers(max_consumers)
                    .create_options(create);
                dir.create_producer(name, &schema.0, &options)
            }
            None => dir.producer(name),
        })
        .map_err(to_py)?;
    Ok(Producer {
        inner: Some(producer),
        name: name.to_owned(),
        timeout,
    })
}

/// Remove a segment.
///
/// Processes that attached it keep their mapping (and data) until they drop it.
///
/// Parameters
/// ----------
/// name : str
///     The segment's name.
/// dir : str or os.PathLike, optional
///     The segment directory; default `$SHMARROW_DIR`, else `/dev/shm`.
///
/// Returns
/// -------
/// bool
///     True if it was removed, False if there was none.
///
/// Raises
/// ------
/// InvalidName
///     The name breaks the naming rule (also a ValueError).
/// AccessDenied
///     Another user's segment in a sticky directory (also a PermissionError).
#[pyfunction]
#[pyo3(signature = (name, *, dir=None))]
fn remove(name: &str, dir: Option<std::path::PathBuf>) -> PyResult<bool> {
    segment_dir(dir).remove(name).map_err(to_py)
}

/// The file of a segment.
///
/// Parameters
/// ----------
/// name : str
///     The segment's name (checked; the file need not exist).
/// dir : str or os.PathLike, optional
///     The segment directory; default `$SHMARROW_DIR`, else `/dev/shm`.
///
/// Returns
/// -------
/// str
///     The path, for stock readers: `pa.memory_map(shmarrow.path(name))`.
///
/// Raises
/// ------
/// InvalidName
///     The name breaks the naming rule (also a ValueError).
#[pyfunction]
#[pyo3(signature = (name, *, dir=None))]
fn path(name: &str, dir: Option<std::path::PathBuf>) -> PyResult<String> {
    let path = segment_dir(dir).segment_path(name).map_err(to_py)?;
    Ok(path.to_string_lossy().into_owned())
}

/// The segments of a directory: tables and channels.
///
/// Parameters
/// ----------
/// dir : str or os.PathLike, optional
///     The segment directory; default `$SHMARROW_DIR`, else `/dev/shm`.
///
/// Returns
/// -------
/// list of dict
///     One per segment (temporary files excluded), sorted by name: `{"name": str, "bytes":
///     int, "kind": "table" | "channel"}`; channels also have `slots`, `slot_size`, `lossy`,
///     `producer_pid` (None when none), `producer_alive`, `consumers` (live ones) and
///     `lifetime`.
///
/// Raises
/// ------
/// ShmarrowError
///     The directory cannot be read.
#[pyfunction]
#[pyo3(signature = (*, dir=None))]
fn list<'py>(
    py: Python<'py>,
    dir: Option<std::path::PathBuf>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let dir = segment_dir(dir);
    let listing = dir.list().map_err(to_py)?;
    let mut items = Vec::new();
    for s in &listing.segments {
        let d = PyDict::new(py);
        d.set_item("name", &s.name)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("kind", "table")?;
        items.push((s.name.as_str(), d));
    }
    for c in &listing.channels {
        // A channel can vanish between listing and reading: leave it out.
        let Ok(info) = dir.channel_info(&c.name) else {
            continue;
        };
        let d = PyDict::new(py);
        d.set_item("name", &c.name)?;
        d.set_item("bytes", c.bytes)?;
        d.set_item("kind", "channel")?;
        d.set_item("slots", info.slots)?;
        d.set_item("slot_size", info.slot_size)?;
        d.set_item("lossy", info.lossy)?;
        d.set_item("producer_pid", info.producer.map(|p| p.pid))?;
        d.set_item("producer_alive", info.producer_alive)?;
        d.set_item("consumers", info.live_consumers())?;
        d.set_item("lifetime", info.meta.map(|m| m.lifetime.to_string()))?;
        items.push((c.name.as_str(), d));
    }
    items.sort_by(|a, b| a.0.cmp(b.0));
    Ok(items.into_iter().map(|(_, d)| d).collect())
}

/// Reclaim what dead processes left.
///
/// Removes temporary files of writers that died mid-publish and `owner` segments whose
/// creator (pid and start time) is dead.
///
/// Parameters
/// ----------
/// dir : str or os.PathLike, optional
///     The segment directory; default `$SHMARROW_DIR`, else `/dev/shm`.
/// dry_run : bool, default False
///     Only report what would be removed.
///
/// Returns
/// -------
/// list of str
///     The file names removed (or that would be).
///
/// Raises
/// ------
/// ShmarrowError
///     The directory cannot be read.
#[pyfunction]
#[pyo3(signature = (*, dir=None, dry_run=false))]
fn gc(dir: Option<std::path::PathBuf>, dry_run: bool) -> PyResult<Vec<String>> {
    let reclaimed = segment_dir(dir).gc(dry_run).map_err(to_py)?;
    Ok(reclaimed
        .into_iter()
        .map(|r| r.file_name.to_string_lossy().into_owned())
        .collect())
}

#[pymodule]
fn _shmarrow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(attach, m)?)?;
    m.add_function(wrap_pyfunction!(column_view, m)?)?;
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(remove, m)?)?;
    m.add_function(wrap_pyfunction!(path, m)?)?;
    m.add_function(wrap_pyfunction!(list, m)?)?;
    m.add_function(wrap_pyfunction!(gc, m)?)?;
    m.add_function(wrap_pyfunction!(reduce, m)?)?;
    m.add_function(wrap_pyfunction!(reduce_partials, m)?)?;
    m.add_function(wrap_pyfunction!(_reduce_worker, m)?)?;
    m.add_function(wrap_pyfunction!(merge_partials, m)?)?;
    m.add_function(wrap_pyfunction!(map_inplace, m)?)?;
    m.add_function(wrap_pyfunction!(lock, m)?)?;
    m.add_function(wrap_pyfunction!(allocate, m)?)?;
    m.add_function(wrap_pyfunction!(subscribe, m)?)?;
    m.add_function(wrap_pyfunction!(producer, m)?)?;
    m.add_class::<Subscription>()?;
    m.add_class::<Producer>()?;
    m.add_class::<Created>()?;
    m.add_class::<Lock>()?;
    m.add_class::<Allocation>()?;
    m.add_class::<Mapping>()?;
    m.add_class::<ColumnPart>()?;
    for (name, exc) in [
        ("ShmarrowError", py.get_type::<ShmarrowError>()),
        ("NotAFile", py.get_type::<NotAFile>()),
        ("CorruptSegment", py.get_type::<CorruptSegment>()),
        ("NotZeroCopy", py.get_type::<NotZeroCopy>()),
        ("InvalidTable", py.get_type::<InvalidTable>()),
        ("ChannelError", py.get_type::<ChannelError>()),
    ] {
        m.add(name, exc)?;
    }
    // Errors raised outside a segment operation carry `.name = None`.
    py.get_type::<ShmarrowError>().setattr("name", py.None())?;
    for dual in Dual::ALL {
        m.add(dual.spec().0, dual.type_object(py)?)?;
    }
    m.add("DEFAULT_DIR", shmarrow::DEFAULT_DIR)?;
    m.add("DIR_ENV", shmarrow::DIR_ENV)?;
    Ok(())
}
