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
    // a damaged directory may claim any size: reserve no more than the archive holds
    let capacity = usize::try_from(size.min(archive_len)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{name}` (truncated or damaged?): {e}"))?;
    if bytes.len() as u64 != size {
        return Err(format!(
            "`{name}` is truncated: {} of its {size} bytes",
            bytes.len()
        ));
    }
    Ok(Some(bytes))
}
