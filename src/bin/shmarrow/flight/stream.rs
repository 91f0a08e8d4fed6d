//! Segments as Flight messages and back: a segment's batches cut into messages, and a
//! received stream decoded by shmarrow's checked decoder.

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_buffer::Buffer;
use arrow_flight::FlightData;
use arrow_flight::error::FlightError;
use arrow_schema::{ArrowError, SchemaRef};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use shmarrow::ipc::{Decoded, Decoder};

/// Target size of one Flight message: what arrow-flight aims for, below the 4 MiB that gRPC
/// clients accept by default.
pub const MESSAGE_BYTES: u64 = 2 << 20;

/// A segment's batches ready to encode: the same arrays (pointing into the mapping) under
/// `schema` (the segment's without our keys), each cut into row slices of about
/// [`MESSAGE_BYTES`] (slicing copies nothing).
///
/// The cut is made here from the batch's exact size in the file: arrow-flight's own split
/// estimates sizes from buffer capacities, which for a mapped segment are the whole mapping,
/// so it would cut every batch into single rows. Encode with `with_max_flight_data_size(
/// usize::MAX)` to keep it from cutting again.
pub fn flight_batches(
    segment: &shmarrow::Segment,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut out = Vec::new();
    for (batch, info) in segment.batches().iter().zip(&segment.info().batches) {
        let batch = RecordBatch::try_new_with_options(
            schema.clone(),
            batch.columns().to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?;
        let rows = batch.num_rows();
        let pieces = info.bytes.div_ceil(MESSAGE_BYTES).max(1) as usize;
        let step = rows.div_ceil(pieces).max(1);
        if pieces == 1 || rows <= 1 {
            out.push(batch);
            continue;
        }
        let mut offset = 0;
        while offset < rows {
            let len = step.min(rows - offset);
            out.push(batch.slice(offset, len));
            offset += len;
        }
    }
    Ok(out)
}

/// A Flight stream (an upload to `serve`, a download by `pull`) decoded batch by batch by
/// [`shmarrow::ipc::Decoder`]: bytes from another host are checked like any foreign IPC
/// (arrow-flight's own decoder panics on a lying buffer offset and allocates whatever a
/// compressed buffer declares).
pub struct FlightBatches {
    input: BoxStream<'static, Result<FlightData, FlightError>>,
    decoder: Decoder,
}

impl FlightBatches {
    /// `label` names the transfer in errors.
    pub fn new(
        label: &str,
        input: impl Stream<Item = Result<FlightData, FlightError>> + Send + 'static,
    ) -> Self {
        Self {
            input: input.boxed(),
            decoder: Decoder::new(label),
        }
    }

    /// The schema, once its message arrived.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.decoder.schema()
    }

    /// The next record batch; `None` when the stream ends.
    pub async fn next(&mut self) -> Result<Option<RecordBatch>, FlightError> {
        while let Some(data) = self.input.try_next().await? {
            let body = Buffer::from(data.data_body);
            match self.decoder.decode(&data.data_header, &body) {
                Ok(Decoded::Batch(batch)) => return Ok(Some(batch)),
                Ok(Decoded::Schema(_) | Decoded::Dictionary | Decoded::Nothing) => {}
                Err(e) => return Err(FlightError::DecodeError(e.to_string())),
            }
        }
        Ok(None)
    }
}
