//! Reader for the zip `torch.save` format (PyTorch 1.6 and later), in pure Rust.
//!
//! libtorch's reader (tch's `Tensor::loadz_multi`) fails on the `OrderedDict` that
//! `module.state_dict()` returns, so this one reads the archive itself. It holds, inside one top
//! folder whose name varies (the file stem when torch.save was given a path, `archive` for a
//! stream):
//!
//! - `data.pkl`: the object's pickle, as in the legacy format ([`super::torch_legacy`]; both
//!   are read by [`super::state_dict`]) except that storage persistent ids have no view field:
//!   `('storage', storage_type, key, location, numel)`;
//! - `data/<key>`: each storage's raw elements, `numel` times the element size, no header;
//! - `byteorder`: `little` or `big` (absent in files from before it was recorded: little);
//!   big-endian files are refused;
//! - `version`, `.format_version`, `.storage_alignment`, `.data/serialization_id`: not needed.
//!
//! torch.save stores entries uncompressed; deflated ones (an archive re-zipped by another tool)
//! are read too. Only the storages the state dict uses are read.

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use tch::Tensor;
use zip::result::ZipError;
use zip::ZipArchive;

use super::pickle::Fallible;
use super::state_dict::{storage_tensor, PickledStateDict};
use crate::error::{Error, Result};

/// The most bytes one entry may hold once inflated.
const MAX_ENTRY_BYTES: u64 = 1 << 30;
/// Deflate's largest expansion: 258 bytes from 2 bits.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Every tensor of the state dict in the zip-format `torch.save` file at `path`, in its order.
pub fn read_torch_zip(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_or_explain(BufReader::new(file), path)
}

/// Every tensor of the zip-format `torch.save` state dict held in `bytes`; `path` names it in
/// errors.
pub fn parse_torch_zip(bytes: &[u8], path: &Path) -> Result<Vec<(String, Tensor)>> {
    parse_or_explain(Cursor::new(bytes), path)
}

fn parse_or_explain<R: Read + Seek>(reader: R, path: &Path) -> Result<Vec<(String, Tensor)>> {
    parse(reader).map_err(|reason| Error::Convert {
        path: path.to_path_buf(),
        reason: format!("zip-format torch.save file: {reason}"),
    })
}

fn parse<R: Read + Seek>(mut reader: R) -> Fallible<Vec<(String, Tensor)>> {
    let archive_len = reader
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("cannot read the archive: {e}"))?;
    let mut archive = ZipArchive::new(reader)
        .map_err(|e| format!("not a readable zip archive (truncated or damaged?): {e}"))?;
    let prefix = top_folder(&mut archive)?;

    let byteorder = format!("{prefix}byteorder");
    match read_entry(&mut archive, &byteorder, archive_len)? {
        None => {}
        Some(order) => match order.trim_ascii() {
            b"little" => {}
            b"big" => {
                return Err(
                    "big-endian files are not supported: load this one with torch.load \
                            and save it again on a little-endian machine"
                        .to_string(),
                )
            }
            other => {
                return Err(format!(
                    "`{byteorder}` names an unknown byte order `{}`",
                    String::from_utf8_lossy(other)
                ))
            }
        },
    }

    let pickle_name = format!("{prefix}data.pkl");
    let pickle = read_entry(&mut archive, &pickle_name, archive_len)?
        .ok_or_else(|| format!("the archive has no `{pickle_name}`: not a torch.save file"))?;
    let state_dict =
        PickledStateDict::from_pickle(&pickle).map_err(|e| format!("`{pickle_name}`: {e}"))?;

    let mut storages = std::collections::HashMap::new();
    for (key, declared) in state_dict.used_storages() {
        let name = format!("{prefix}data/{key}");
        let n_bytes = declared
            .numel
            .checked_mul(declared.kind.element_size() as u64)
            .ok_or_else(|| format!("storage `{key}` has an impossible size"))?;
        let data = read_entry(&mut archive, &name, archive_len)?
            .ok_or_else(|| format!("storage `{key}` has no data: the archive has no `{name}`"))?;
        if data.len() as u64 != n_bytes {
            return Err(format!(
                "`{name}` holds {} bytes, but storage `{key}` declares {} elements of {} \
                 ({n_bytes} bytes)",
                data.len(),
                declared.numel,
                declared.kind.name()
            ));
        }
        storages.insert(key, storage_tensor(&data, declared.numel, declared.kind)?);
    }
    state_dict.into_tensors(&storages)
}

/// The folder every entry lies in, with its slash (`archive/`): as torch.load, the first entry's.
fn top_folder<R: Read + Seek>(archive: &mut ZipArchive<R>) -> Fallible<String> {
    if archive.is_empty() {
        return Err("the archive is empty".to_string());
    }
    let first = archive
        .by_index_raw(0)
        .map_err(|e| format!("cannot read the archive's first entry: {e}"))?
        .name()
        .to_string();
    match first.split_once('/') {
        Some((folder, _)) if !folder.is_empty() => Ok(format!("{folder}/")),
        _ => Err(format!(
            "its first entry `{first}` is not in a folder, as torch.save writes them: not a \
             torch.save file"
        )),
    }
}

/// The bytes of entry `name`, or `None` where the archive has none.
fn read_entry<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    name: &str,
    archive_len: u64,
) -> Fallible<Option<Vec<u8>>> {
    let mut entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(format!("cannot read `{name}`: {e}")),
    };
    let size = entry.size();
    // A damaged or hostile directory may claim any size: no entry is larger than deflate can
    // expand its compressed bytes to, nor than MAX_ENTRY_BYTES (a style network is a few MB).
    let possible = entry
        .compressed_size()
        .min(archive_len)
        .saturating_mul(MAX_DEFLATE_RATIO)
        .min(MAX_ENTRY_BYTES);
    if size > possible {
        return Err(format!(
            "`{name}` declares {size} bytes, more than its {} compressed bytes can hold or over \
             the limit of {MAX_ENTRY_BYTES} bytes",
            entry.compressed_size()
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // one byte more than declared: reading to the entry's end checks its CRC-32
    entry
        .by_ref()
        .take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{name}` (truncated or damaged?): {e}"))?;
    if bytes.len() as u64 > size {
        return Err(format!(
            "`{name}` holds more than the {size} bytes it declares"
        ));
    }
    if bytes.len() as u64 != size {
        return Err(format!(
            "`{name}` is truncated: {} of its {size} bytes",
            bytes.len()
        ));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A stored archive holding `archive/data.pkl`, whose central directory then claims
    /// `claimed` bytes for it.
    fn archive_claiming(claimed: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut writer = zip::ZipWriter::new(Cursor::new(&mut bytes));
        let stored =
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        writer.start_file("archive/data.pkl", stored).unwrap();
        writer.write_all(b"\x80\x02}q\x00.").unwrap();
        writer.finish().unwrap();
        drop(writer);
        let directory = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bytes[directory + 24..directory + 28].copy_from_slice(&claimed.to_le_bytes());
        bytes
    }

    #[test]
    fn entries_claiming_more_than_their_bytes_can_hold_are_refused_before_reading() {
        // 4 GB claimed for 6 stored bytes: once reserved up to the archive's size, and read
        // with no bound on what a deflated entry expands to
        let error = parse(Cursor::new(archive_claiming(0xffff_fff0))).unwrap_err();
        assert!(error.contains("declares 4294967280 bytes"), "{error}");
        // the honest archive reads to its (empty) state dict
        let honest = parse(Cursor::new(archive_claiming(6))).unwrap();
        assert!(honest.is_empty());
    }
}
