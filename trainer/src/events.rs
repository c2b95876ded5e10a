//! A minimal TensorBoard event-file writer: scalars and PNG images.
//!
//! Why our own: the `tensorboard-rs` crate is unmaintained, pulls protobuf 2 (with an open
//! advisory), swaps width and height in `add_image`, and leaves several methods
//! `unimplemented!()`. The format is small: a TFRecord stream (length, masked CRC-32C of the
//! length, payload, masked CRC-32C of the payload) of `Event` protobuf messages, of which we
//! need a few fields, declared below for `prost`'s derive (field numbers from
//! tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::error::{Error, Result};

/// `tensorflow.Event`, with the two members of its `what` oneof that we write.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    /// The first event of a file: `brain.Event:2`.
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a tag and one value of its `value` oneof (a oneof, so that a
/// scalar 0 is still written).
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(oneof = "Value", tags = "2, 4")]
    value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Value {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(Image),
}

/// `tensorflow.Summary.Image`.
#[derive(Clone, PartialEq, prost::Message)]
struct Image {
    #[prost(int32, tag = "1")]
    height: i32,
    #[prost(int32, tag = "2")]
    width: i32,
    /// 1 grayscale, 2 grayscale + alpha, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    encoded_image_string: Vec<u8>,
}

const RGB: i32 = 3;

/// Appends events to `DIR/events.out.tfevents.<unix time>.<host>.<pid>`.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Creates the folder if needed and a new event file in it (TensorBoard reads every event
    /// file of a folder, so a resumed run simply adds one).
    pub fn create(dir: &Path) -> Result<Self> {
        let write_err = |source| Error::Write {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}",
            unix_time() as u64,
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::create(&path).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        let mut writer = Self {
            path,
            file: BufWriter::new(file),
        };
        writer.write_event(&Event {
            wall_time: unix_time(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".to_string())),
        })?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Several scalars at one step, as one event.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        let value = values
            .iter()
            .map(|(tag, value)| SummaryValue {
                tag: tag.clone(),
                value: Some(Value::SimpleValue(*value as f32)),
            })
            .collect();
        self.summary_event(step, Summary { value })
    }

    /// One image at one step, already PNG-encoded (`size` is its width and height), RGB.
    pub fn png_image(&mut self, step: u64, tag: &str, size: (u32, u32), png: &[u8]) -> Result<()> {
        let (width, height) = size;
        let side = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        let image = Image {
            height: side(height),
            width: side(width),
            colorspace: RGB,
            encoded_image_string: png.to_vec(),
        };
        let value = vec![SummaryValue {
            tag: tag.to_string(),
            value: Some(Value::Image(image)),
        }];
        self.summary_event(step, Summary { value })
    }

    fn summary_event(&mut self, step: u64, summary: Summary) -> Result<()> {
        self.write_event(&Event {
            wall_time: unix_time(),
            step: i64::try_from(step).unwrap_or(i64::MAX),
            what: Some(What::Summary(summary)),
        })
    }

    /// One event as one record; flushed so a live TensorBoard sees progress (no fsync: logs,
    /// not state).
    fn write_event(&mut self, event: &Event) -> Result<()> {
        self.write_record(&event.encode_to_vec())?;
        self.flush()
    }

    fn write_record(&mut self, data: &[u8]) -> Result<()> {
        let length = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&length);
        record.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
        record.extend_from_slice(data);
        record.extend_from_slice(&masked_crc32c(data).to_le_bytes());
        self.file.write_all(&record).map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })
    }
}

fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bytewise with a 256-entry table.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &byte in data {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's masking, so CRCs of data that itself contains CRCs stay well distributed.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC catalogue's check value for CRC-32C over "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn events_encode_as_the_protobuf_wire_format() {
        let event = Event {
            wall_time: 1.5,
            step: 300,
            what: Some(What::Summary(Summary {
                value: vec![SummaryValue {
                    tag: "loss".into(),
                    value: Some(Value::SimpleValue(0.0)),
                }],
            })),
        };
        #[rustfmt::skip]
        let expected = [
            0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, // wall_time: field 1, 64-bit
            0x10, 0xac, 0x02, // step: field 2, varint, seven bits per byte
            0x2a, 13, // summary: field 5, 13 bytes
            0x0a, 11, // a value: field 1, 11 bytes
            0x0a, 4, b'l', b'o', b's', b's', // its tag
            0x15, 0, 0, 0, 0, // simple_value 0.0: field 2, 32-bit, written though zero
        ];
        assert_eq!(event.encode_to_vec(), expected);
        assert_eq!(Event::decode(&expected[..]).unwrap(), event);
    }
}
