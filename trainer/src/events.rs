//! A minimal TensorBoard event-file writer: scalars and PNG images.
//!
//! Why our own: the `tensorboard-rs` crate is unmaintained, pulls protobuf 2 (with an open
//! advisory), swaps width and height in `add_image`, and leaves several methods
//! `unimplemented!()`. The format is small: a TFRecord stream (length, masked CRC-32C of the
//! length, payload, masked CRC-32C of the payload) of `Event` protobuf messages, of which we
//! need five fields, encoded here by hand.
//!
//! Messages (field numbers from tensorflow/core/util/event.proto and summary.proto):
//! `Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }`,
//! `Summary { repeated Value value = 1; }`,
//! `Value { string tag = 1; float simple_value = 2; Image image = 4; }`,
//! `Image { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

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
        let mut event = Vec::new();
        put_double(&mut event, 1, unix_time());
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.write_record(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Several scalars at one step, as one event.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, value) in values {
            let mut entry = Vec::new();
            put_bytes(&mut entry, 1, tag.as_bytes());
            put_float(&mut entry, 2, *value as f32);
            put_bytes(&mut summary, 1, &entry);
        }
        self.summary_event(step, &summary)
    }

    /// One RGB image at one step, stored PNG-encoded.
    pub fn image(&mut self, step: u64, tag: &str, image: &image::RgbImage) -> Result<()> {
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(image.clone())
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| Error::Image {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        let mut encoded = Vec::new();
        put_varint_field(&mut encoded, 1, image.height() as u64);
        put_varint_field(&mut encoded, 2, image.width() as u64);
        put_varint_field(&mut encoded, 3, 3); // RGB
        put_bytes(&mut encoded, 4, &png);
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, tag.as_bytes());
        put_bytes(&mut entry, 4, &encoded);
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, &entry);
        self.summary_event(step, &summary)
    }

    fn summary_event(&mut self, step: u64, summary: &[u8]) -> Result<()> {
        let mut event = Vec::new();
        put_double(&mut event, 1, unix_time());
        put_varint_field(&mut event, 2, step);
        put_bytes(&mut event, 5, summary);
        self.write_record(&event)?;
        // Flushed per event so a live TensorBoard sees progress; no fsync (logs, not state).
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

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Wire types: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit.
fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(out, u64::from(field << 3 | wire_type));
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_key(out, field, 0);
    put_varint(out, value);
}

fn put_double(out: &mut Vec<u8>, field: u32, value: f64) {
    put_key(out, field, 1);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_float(out: &mut Vec<u8>, field: u32, value: f32) {
    put_key(out, field, 5);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
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
    fn varints_use_seven_bits_per_byte() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }
}
