//! Reader for the legacy (non-zip) `torch.save` format, in pure Rust: the container only.
//! What the object pickle means is [`super::state_dict`]'s, the pickle machine
//! [`super::pickle`]'s; the zip-format reader, [`super::torch_zip`], shares both.
//!
//! PyTorch before 1.6 (and `torch.save(obj, f, _use_new_zipfile_serialization=False)` since)
//! writes, back to back:
//!
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c` (a `LONG1` of 10 bytes);
//! 2. a pickle of the format version, `1001`;
//! 3. a pickle of `sys_info`, a dict (`protocol_version`, `little_endian`, `type_sizes`);
//! 4. the object's pickle, whose storage persistent ids carry a sixth field, the view
//!    metadata of 0.3-era files (see [`super::state_dict`]);
//! 5. a pickle of the list of storage keys, in the order their data follows;
//! 6. for each key: its element count as a little-endian u64, then the elements' raw
//!    little-endian bytes.
//!
//! The pickles use protocol 2 (Python 2 byte strings and Python 3 unicode strings both occur).
//! All but the object's hold plain data only. Any read past the end is an error naming the
//! byte offset: malformed input never panics.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tch::Tensor;

use super::pickle::{self, Fallible, Input, PlainData, Value};
use super::state_dict::{storage_key, storage_tensor, PickledStateDict};
use crate::error::{Error, Result};

/// The first pickle's value, as the little-endian bytes of `LONG1`.
const MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const FORMAT_VERSION: i64 = 1001;

/// Whether `head` (a file's first bytes) starts a zip archive, the current `torch.save` format.
pub fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

/// Every tensor of a legacy `torch.save`d state dict in `path`, in the file's order.
pub fn read_torch_legacy(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_torch_legacy(&bytes, path)
}

/// Every tensor of a legacy `torch.save`d state dict held in `bytes`; `path` names it in errors.
pub fn parse_torch_legacy(bytes: &[u8], path: &Path) -> Result<Vec<(String, Tensor)>> {
    parse(bytes).map_err(|reason| Error::Convert {
        path: path.to_path_buf(),
        reason,
    })
}

fn parse(bytes: &[u8]) -> Fallible<Vec<(String, Tensor)>> {
    if is_zip(bytes) {
        return Err("a zip-format torch.save file, not the legacy format".to_string());
    }
    let mut input = Input::new(bytes);
    let not_torch = |detail: String| {
        if bytes.get(257..262) == Some(b"ustar") {
            "tar-format torch.save files (PyTorch before 0.1.10) are not supported".to_string()
        } else {
            format!("not a torch.save file: neither a zip archive nor the legacy format: {detail}")
        }
    };
    match pickle::load(&mut input, &mut PlainData) {
        Ok(Value::BigInt(magic)) if magic[..] == MAGIC_NUMBER => {}
        Ok(_) => return Err(not_torch("no magic number".to_string())),
        Err(detail) => return Err(not_torch(detail)),
    }
    parse_after_magic(&mut input).map_err(|e| format!("legacy torch.save file: {e}"))
}

fn parse_after_magic(input: &mut Input) -> Fallible<Vec<(String, Tensor)>> {
    match pickle::load(input, &mut PlainData)? {
        Value::Int(FORMAT_VERSION) => {}
        Value::Int(other) => return Err(format!("unsupported legacy format version {other}")),
        _ => return Err("the format version is not a number".to_string()),
    }
    if !matches!(pickle::load(input, &mut PlainData)?, Value::Dict(_)) {
        return Err("the system information is not a dict".to_string());
    }
    let state_dict = PickledStateDict::load(input)?;
    let used: HashSet<String> = state_dict
        .used_storages()
        .into_iter()
        .map(|(key, _)| key)
        .collect();

    let keys = match pickle::load(input, &mut PlainData)? {
        Value::List(list) => list.borrow().items.clone(),
        _ => return Err("the storage key list is not a list".to_string()),
    };
    let mut storages = HashMap::new();
    for key in &keys {
        let key = storage_key(key).ok_or("a storage key is not a string")?;
        let kind = state_dict
            .declared(&key)
            .ok_or_else(|| format!("storage `{key}` has data but no tensor declares it"))?
            .kind;
        let header = input.pos;
        let numel = input.u64(&format!("the size of storage `{key}`"))?;
        let n_bytes = numel
            .checked_mul(kind.element_size() as u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("storage `{key}` at byte {header} has an impossible size"))?;
        let data = input.take(n_bytes, &format!("the data of storage `{key}`"))?;
        // storages of what the state dict leaves out (a checkpoint's optimizer) need no tensor
        if used.contains(&key) {
            storages.insert(key, storage_tensor(data, numel, kind)?);
        }
    }
    state_dict.into_tensors(&storages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_pickles_hold_plain_data_only() {
        let mut bytes = b"\x80\x02\x8a\x0a".to_vec();
        bytes.extend(MAGIC_NUMBER);
        bytes.extend(b".\x80\x02cos\nsystem\n)R.");
        let error = parse(&bytes).unwrap_err();
        assert!(error.starts_with("legacy torch.save file"), "{error}");
        assert!(error.contains("`os.system`"), "{error}");
    }
}
