//! Reader for the legacy (non-zip) `torch.save` format, in pure Rust, and the unpickler and
//! tensor rebuilding it shares with the zip-format reader, [`super::torch_zip`].
//!
//! PyTorch before 1.6 (and `torch.save(obj, f, _use_new_zipfile_serialization=False)` since)
//! writes, back to back:
//!
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c` (a `LONG1` of 10 bytes);
//! 2. a pickle of the format version, `1001`;
//! 3. a pickle of `sys_info`, a dict (`protocol_version`, `little_endian`, `type_sizes`);
//! 4. the object's pickle. A tensor is
//!    `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
//!    backward_hooks[, metadata])` (PyTorch >= 0.4) or `torch._utils._rebuild_tensor(storage,
//!    offset, size, stride)` (0.3), where `storage` is a persistent id (`BINPERSID`) of
//!    `('storage', storage_type, key, location, numel, view_metadata)`: `storage_type` a global
//!    such as `torch.FloatStorage`, `key` a string naming the storage (tensors sharing one use
//!    the same key), `location` a device (`cpu`, `cuda:0`; ignored here, everything lands on the
//!    CPU), and `view_metadata` either `None` or `(view_key, offset, size)` in elements for a
//!    view into the storage (0.3-era files). A state dict is a `collections.OrderedDict`: Python
//!    3 reduces it with no arguments and fills it with `SETITEMS`; Python 2 passed a list of
//!    `[name, tensor]` pairs. Its `_metadata` attribute follows as a `BUILD` and is ignored;
//! 5. a pickle of the list of storage keys, in the order their data follows;
//! 6. for each key: its element count as a little-endian u64, then the elements' raw
//!    little-endian bytes.
//!
//! The pickles use protocol 2 (Python 2 byte strings and Python 3 unicode strings both occur);
//! the unpickler below handles the opcodes of protocols 2 to 4 that such files use, builds no
//! objects other than containers, scalars, storages and tensors, and calls only the few
//! callables listed in `reduce`. Anything else is an error naming the byte offset, as is any
//! read past the end: malformed input never panics. Containers may be nested at most
//! `MAX_DEPTH` deep and cannot be modified once placed inside another, so no input can build
//! a cycle or a structure too deep to drop.
//!
//! The saved object is a state dict (a dict or `OrderedDict` of name to tensor) or a training
//! checkpoint, a dict that keeps one under its `state_dict` or `model` entry next to other
//! things (epoch, optimizer state); only the state dict's storages become tensors.
//!
//! Floating-point storages (f16, bf16, f32, f64) become f32 tensors, integer and bool storages
//! keep their type. Tensors are strided views into their storage, as `torch.load` returns them.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// The first pickle's value, as the little-endian bytes of `LONG1`.
const MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const FORMAT_VERSION: i64 = 1001;
/// How deeply containers may nest; a state dict needs 4.
const MAX_DEPTH: usize = 64;

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

pub(super) type Fallible<T> = std::result::Result<T, String>;

fn parse(bytes: &[u8]) -> Fallible<Vec<(String, Tensor)>> {
    if is_zip(bytes) {
        return Err("a zip-format torch.save file, not the legacy format".to_string());
    }
    let mut input = Input { bytes, pos: 0 };
    let not_torch = |detail: String| {
        if bytes.get(257..262) == Some(b"ustar") {
            "tar-format torch.save files (PyTorch before 0.1.10) are not supported".to_string()
        } else {
            format!("not a torch.save file: neither a zip archive nor the legacy format: {detail}")
        }
    };
    match Unpickler::new(&mut input).load() {
        Ok(Value::BigInt(magic)) if magic[..] == MAGIC_NUMBER => {}
        Ok(_) => return Err(not_torch("no magic number".to_string())),
        Err(detail) => return Err(not_torch(detail)),
    }
    parse_after_magic(&mut input).map_err(|e| format!("legacy torch.save file: {e}"))
}

fn parse_after_magic(input: &mut Input) -> Fallible<Vec<(String, Tensor)>> {
    match Unpickler::new(input).load()? {
        Value::Int(FORMAT_VERSION) => {}
        Value::Int(other) => return Err(format!("unsupported legacy format version {other}")),
        _ => return Err("the format version is not a number".to_string()),
    }
    if !matches!(Unpickler::new(input).load()?, Value::Dict(_)) {
        return Err("the system information is not a dict".to_string());
    }
    let state_dict = PickledStateDict::load(input)?;
    let used: HashSet<String> = state_dict
        .used_storages()
        .into_iter()
        .map(|(key, _)| key)
        .collect();

    let keys = match Unpickler::new(input).load()? {
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

/// Entries under which training checkpoints keep their state dict, next to others such as the
/// epoch or the optimizer's state; the first present wins.
const CHECKPOINT_ENTRIES: [&str; 2] = ["state_dict", "model"];

/// A state dict as an object pickle describes it, before any storage data is read.
pub(super) struct PickledStateDict {
    entries: Vec<(String, Rc<TensorRef>)>,
    /// Every storage a persistent id anywhere in the pickle declared, by key.
    declared: HashMap<String, StorageDecl>,
}

impl PickledStateDict {
    /// Unpickles the object pickle at `input` and finds the state dict in it.
    fn load(input: &mut Input) -> Fallible<Self> {
        let mut unpickler = Unpickler::new(input);
        let object = unpickler.load()?;
        let declared = std::mem::take(&mut unpickler.storages);
        let entries = state_dict_entries(&object)?;
        Ok(Self { entries, declared })
    }

    /// The state dict in `bytes`, a whole object pickle (a zip archive's `data.pkl`).
    pub(super) fn from_pickle(bytes: &[u8]) -> Fallible<Self> {
        Self::load(&mut Input { bytes, pos: 0 })
    }

    fn declared(&self, key: &str) -> Option<StorageDecl> {
        self.declared.get(key).copied()
    }

    /// The storages the state dict's tensors use, each once, in order of first use.
    pub(super) fn used_storages(&self) -> Vec<(String, StorageDecl)> {
        let mut seen = HashSet::new();
        self.entries
            .iter()
            .map(|(_, tensor)| &tensor.storage.key)
            .filter(|key| seen.insert(key.as_str()))
            .filter_map(|key| Some((key.clone(), self.declared(key)?)))
            .collect()
    }

    /// The tensors, as views into `storages` (each storage's elements as a 1-D tensor, by key).
    pub(super) fn into_tensors(
        self,
        storages: &HashMap<String, Tensor>,
    ) -> Fallible<Vec<(String, Tensor)>> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let mut positions = HashMap::new();
        for (name, tensor) in self.entries {
            let storage = storages
                .get(&tensor.storage.key)
                .ok_or_else(|| format!("`{name}`: storage `{}` has no data", tensor.storage.key))?;
            let tensor = materialize(&name, &tensor, storage)?;
            // a repeated key replaces the earlier value, as in a Python dict
            match positions.get(&name) {
                Some(&i) => tensors[i] = (name, tensor),
                None => {
                    positions.insert(name.clone(), tensors.len());
                    tensors.push((name, tensor));
                }
            }
        }
        Ok(tensors)
    }
}

/// The (name, tensor) entries of the saved state dict: the saved object itself or, for a
/// checkpoint that also holds other things, its `state_dict` or `model` entry.
fn state_dict_entries(object: &Value) -> Fallible<Vec<(String, Rc<TensorRef>)>> {
    let top_level = "the saved object";
    let Value::Dict(dict) = object else {
        return tensor_entries(object, top_level);
    };
    let all_tensors = dict
        .borrow()
        .entries
        .iter()
        .all(|(_, value)| matches!(value, Value::Tensor(_)));
    if all_tensors {
        return tensor_entries(object, top_level);
    }
    for wrapper in CHECKPOINT_ENTRIES {
        let dict = dict.borrow();
        // the last of repeated keys counts, as in a Python dict
        let inner = dict
            .entries
            .iter()
            .rev()
            .find(|(key, _)| matches!(key, Value::Str(name) if &**name == wrapper));
        if let Some((_, inner)) = inner {
            return tensor_entries(inner, &format!("the checkpoint's `{wrapper}` entry"));
        }
    }
    tensor_entries(object, top_level).map_err(|e| {
        format!(
            "{e} (a checkpoint's tensors are read from its `state_dict` or `model` entry; it has \
             neither)"
        )
    })
}

/// The entries of `dict`, which must map names to tensors; `what` names it in errors.
fn tensor_entries(dict: &Value, what: &str) -> Fallible<Vec<(String, Rc<TensorRef>)>> {
    let Value::Dict(dict) = dict else {
        return Err(format!(
            "{what} is {}, not a state dict",
            dict.type_name_with_article()
        ));
    };
    let dict = dict.borrow();
    let mut entries = Vec::new();
    for (key, value) in &dict.entries {
        let Value::Str(name) = key else {
            return Err(format!(
                "{what} has a key that is {}",
                key.type_name_with_article()
            ));
        };
        let Value::Tensor(tensor) = value else {
            return Err(format!(
                "entry `{name}` of {what} is {}, not a tensor",
                value.type_name_with_article()
            ));
        };
        entries.push((name.to_string(), Rc::clone(tensor)));
    }
    Ok(entries)
}

fn storage_key(value: &Value) -> Option<String> {
    match value {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A storage's elements as a 1-D tensor, f32 for every floating-point type.
pub(super) fn storage_tensor(data: &[u8], numel: u64, kind: StorageKind) -> Fallible<Tensor> {
    let numel = i64::try_from(numel).map_err(|_| "a storage is too large".to_string())?;
    let tensor = Tensor::f_from_data_size(data, &[numel], kind.kind())
        .map_err(|e| format!("cannot build a {} storage: {e}", kind.name()))?;
    if kind.is_float() && kind.kind() != Kind::Float {
        tensor
            .f_to_kind(Kind::Float)
            .map_err(|e| format!("cannot convert a {} storage to f32: {e}", kind.name()))
    } else {
        Ok(tensor)
    }
}

/// The strided view `tensor` describes into `storage`, after checking it stays inside.
fn materialize(name: &str, tensor: &TensorRef, storage: &Tensor) -> Fallible<Tensor> {
    let storage_len = storage.size()[0];
    let outside = || format!("tensor `{name}` reaches outside its storage");
    let (base, limit) = match tensor.storage.view {
        None => (0, storage_len),
        Some((offset, len)) => {
            let end = offset.checked_add(len).ok_or_else(outside)?;
            if end > storage_len {
                return Err(outside());
            }
            (offset, end)
        }
    };
    let offset = base.checked_add(tensor.offset).ok_or_else(outside)?;
    if tensor.size.contains(&0) {
        if offset > limit {
            return Err(outside());
        }
    } else {
        let mut last = offset;
        for (&n, &stride) in tensor.size.iter().zip(&tensor.stride) {
            last = (n - 1)
                .checked_mul(stride)
                .and_then(|reach| last.checked_add(reach))
                .ok_or_else(outside)?;
        }
        if last >= limit {
            return Err(outside());
        }
    }
    storage
        .f_as_strided(tensor.size.as_slice(), tensor.stride.as_slice(), offset)
        .map_err(|e| format!("tensor `{name}`: {e}"))
}

/// The storage types torch writes, by their class name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StorageKind {
    Float,
    Double,
    Half,
    BFloat16,
    Long,
    Int,
    Short,
    Char,
    Byte,
    Bool,
}

impl StorageKind {
    fn from_global(module: &str, name: &str) -> Option<Self> {
        if module != "torch" && module != "torch.cuda" {
            return None;
        }
        Some(match name {
            "FloatStorage" => Self::Float,
            "DoubleStorage" => Self::Double,
            "HalfStorage" => Self::Half,
            "BFloat16Storage" => Self::BFloat16,
            "LongStorage" => Self::Long,
            "IntStorage" => Self::Int,
            "ShortStorage" => Self::Short,
            "CharStorage" => Self::Char,
            "ByteStorage" => Self::Byte,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        match self {
            Self::Float => Kind::Float,
            Self::Double => Kind::Double,
            Self::Half => Kind::Half,
            Self::BFloat16 => Kind::BFloat16,
            Self::Long => Kind::Int64,
            Self::Int => Kind::Int,
            Self::Short => Kind::Int16,
            Self::Char => Kind::Int8,
            Self::Byte => Kind::Uint8,
            Self::Bool => Kind::Bool,
        }
    }

    pub(super) fn name(self) -> String {
        format!("{self:?}Storage")
    }

    fn is_float(self) -> bool {
        matches!(
            self,
            Self::Float | Self::Double | Self::Half | Self::BFloat16
        )
    }

    pub(super) fn element_size(self) -> usize {
        match self {
            Self::Double | Self::Long => 8,
            Self::Float | Self::Int => 4,
            Self::Half | Self::BFloat16 | Self::Short => 2,
            Self::Char | Self::Byte | Self::Bool => 1,
        }
    }
}

/// What the persistent ids naming a storage key declare about it (the first one, where they
/// differ in size, as `torch.load` does).
#[derive(Debug, Clone, Copy)]
pub(super) struct StorageDecl {
    pub(super) kind: StorageKind,
    /// Element count of the whole storage.
    pub(super) numel: u64,
}

/// A storage as a persistent id names it: the root storage and, for a view, its element range.
#[derive(Debug)]
struct StorageRef {
    key: String,
    view: Option<(i64, i64)>,
}

/// A tensor before its storage's data is read.
#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

/// The pickle values a torch state dict consists of.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64, as its little-endian two's-complement bytes.
    BigInt(Rc<[u8]>),
    /// A float (no torch state dict needs its value).
    Float,
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Tuple>),
    List(Rc<RefCell<List>>),
    Dict(Rc<RefCell<Dict>>),
    Global(Rc<(String, String)>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

#[derive(Debug)]
struct Tuple {
    items: Vec<Value>,
    depth: usize,
}

#[derive(Debug, Default)]
struct List {
    items: Vec<Value>,
    depth: usize,
    sealed: bool,
}

#[derive(Debug, Default)]
struct Dict {
    entries: Vec<(Value, Value)>,
    depth: usize,
    sealed: bool,
}

impl Value {
    /// The type's name with an article, for messages: "an int", "a tensor", "None".
    fn type_name_with_article(&self) -> String {
        match self {
            Value::None => "None".to_string(),
            Value::Int(_) | Value::BigInt(_) => "an int".to_string(),
            other => format!("a {}", other.type_name()),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class or function",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    /// Nesting depth: 0 for scalars, 1 + the deepest item for containers.
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(t) => t.depth,
            Value::List(l) => l.borrow().depth.max(1),
            Value::Dict(d) => d.borrow().depth.max(1),
            _ => 0,
        }
    }

    /// Marks a list or dict as placed inside another container: it may no longer change, which
    /// keeps recorded depths true and cycles impossible.
    fn seal(&self) {
        match self {
            Value::List(l) => l.borrow_mut().sealed = true,
            Value::Dict(d) => d.borrow_mut().sealed = true,
            _ => {}
        }
    }

    fn is_same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::List(a), Value::List(b)) => Rc::ptr_eq(a, b),
            (Value::Dict(a), Value::Dict(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn int(&self, what: &str) -> Fallible<i64> {
        match self {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(i64::from(*b)),
            other => Err(format!("{what} is a {}, not an int", other.type_name())),
        }
    }

    fn str(&self, what: &str) -> Fallible<Rc<str>> {
        match self {
            Value::Str(s) => Ok(Rc::clone(s)),
            other => Err(format!("{what} is a {}, not a string", other.type_name())),
        }
    }

    /// The items of a tuple or list.
    fn items(&self, what: &str) -> Fallible<Vec<Value>> {
        match self {
            Value::Tuple(t) => Ok(t.items.clone()),
            Value::List(l) => Ok(l.borrow().items.clone()),
            other => Err(format!("{what} is a {}, not a tuple", other.type_name())),
        }
    }

    fn ints(&self, what: &str) -> Fallible<Vec<i64>> {
        self.items(what)?
            .iter()
            .map(|item| {
                let i = item.int(what)?;
                if i < 0 {
                    return Err(format!("{what} has a negative entry {i}"));
                }
                Ok(i)
            })
            .collect()
    }
}

fn depth_after(depth: usize, items: &[Value]) -> Fallible<usize> {
    let deepest = items.iter().map(Value::depth).max().unwrap_or(0);
    let depth = depth.max(deepest + 1);
    if depth > MAX_DEPTH {
        return Err(format!("containers nest deeper than {MAX_DEPTH}"));
    }
    Ok(depth)
}

fn tuple(items: Vec<Value>) -> Fallible<Value> {
    let depth = depth_after(0, &items)?;
    items.iter().for_each(Value::seal);
    Ok(Value::Tuple(Rc::new(Tuple { items, depth })))
}

/// Bounds-checked reads from the file.
struct Input<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize, what: &str) -> Fallible<&'a [u8]> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or_else(|| {
                format!(
                    "the file is truncated: {what} at byte {} needs {n} bytes, {} are left",
                    self.pos,
                    self.bytes.len().saturating_sub(self.pos)
                )
            })?;
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Fallible<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Fallible<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Fallible<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Fallible<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn len32(&mut self, what: &str) -> Fallible<usize> {
        Ok(self.u32(what)? as usize)
    }

    fn len64(&mut self, what: &str) -> Fallible<usize> {
        usize::try_from(self.u64(what)?).map_err(|_| format!("{what}: impossible length"))
    }

    /// A text line (GLOBAL's operands), without its newline.
    fn line(&mut self, what: &str) -> Fallible<String> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let end = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("{what} at byte {} has no end of line", self.pos))?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(line)
    }
}

/// One pickle's worth of the stack machine.
struct Unpickler<'i, 'a> {
    input: &'i mut Input<'a>,
    stack: Vec<Value>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Every storage key a persistent id declared.
    storages: HashMap<String, StorageDecl>,
}

impl<'i, 'a> Unpickler<'i, 'a> {
    fn new(input: &'i mut Input<'a>) -> Self {
        Unpickler {
            input,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            storages: HashMap::new(),
        }
    }

    fn load(&mut self) -> Fallible<Value> {
        loop {
            let at = self.input.pos;
            let opcode = self.input.u8("a pickle opcode")?;
            if opcode == b'.' {
                return self
                    .pop()
                    .map_err(|e| format!("{e} at the end of a pickle (byte {at})"));
            }
            self.step(opcode)
                .map_err(|e| format!("{e} (pickle opcode 0x{opcode:02x} at byte {at})"))?;
        }
    }

    fn step(&mut self, opcode: u8) -> Fallible<()> {
        let input = &mut *self.input;
        match opcode {
            // PROTO
            0x80 => {
                let protocol = input.u8("the protocol")?;
                if protocol > 5 {
                    return Err(format!("unsupported pickle protocol {protocol}"));
                }
            }
            // FRAME: only a hint for buffered readers
            0x95 => {
                input.u64("a frame length")?;
            }
            b'(' => self.marks.push(self.stack.len()),
            // POP
            b'0' => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            // POP_MARK
            b'1' => {
                self.pop_mark()?;
            }
            // DUP
            b'2' => {
                let top = self.stack.last().cloned().ok_or("empty stack")?;
                self.stack.push(top);
            }
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            // BININT, BININT1, BININT2
            b'J' => {
                let value = i32::from_le_bytes(input.array("an int")?);
                self.stack.push(Value::Int(value.into()));
            }
            b'K' => {
                let value = input.u8("an int")?;
                self.stack.push(Value::Int(value.into()));
            }
            b'M' => {
                let value = u16::from_le_bytes(input.array("an int")?);
                self.stack.push(Value::Int(value.into()));
            }
            // LONG1, LONG4
            0x8a | 0x8b => {
                let n = if opcode == 0x8a {
                    input.u8("a long's length")? as usize
                } else {
                    input.len32("a long's length")?
                };
                let bytes = input.take(n, "a long")?;
                self.stack.push(long(bytes));
            }
            // BINFLOAT
            b'G' => {
                input.take(8, "a float")?;
                self.stack.push(Value::Float);
            }
            // SHORT_BINSTRING, BINSTRING: Python 2 byte strings, ASCII in torch files
            b'U' | b'T' => {
                let n = if opcode == b'U' {
                    input.u8("a string's length")? as usize
                } else {
                    input.len32("a string's length")?
                };
                let bytes = input.take(n, "a string")?;
                let text = match std::str::from_utf8(bytes) {
                    Ok(text) => text.to_string(),
                    Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
                };
                self.stack.push(Value::Str(text.into()));
            }
            // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
            0x8c | b'X' | 0x8d => {
                let n = match opcode {
                    0x8c => input.u8("a string's length")? as usize,
                    b'X' => input.len32("a string's length")?,
                    _ => input.len64("a string's length")?,
                };
                let bytes = input.take(n, "a string")?;
                let text = std::str::from_utf8(bytes).map_err(|_| "a string is not UTF-8")?;
                self.stack.push(Value::Str(text.into()));
            }
            // SHORT_BINBYTES, BINBYTES, BINBYTES8
            b'C' | b'B' | 0x8e => {
                let n = match opcode {
                    b'C' => input.u8("a bytes length")? as usize,
                    b'B' => input.len32("a bytes length")?,
                    _ => input.len64("a bytes length")?,
                };
                let bytes = input.take(n, "bytes")?;
                self.stack.push(Value::Bytes(bytes.into()));
            }
            b')' => self.stack.push(tuple(Vec::new())?),
            // TUPLE1, TUPLE2, TUPLE3
            0x85..=0x87 => {
                let n = usize::from(opcode - 0x84);
                let at = self.stack.len().checked_sub(n).ok_or("stack underflow")?;
                if self.marks.last().is_some_and(|&mark| mark > at) {
                    return Err("stack underflow".to_string());
                }
                let items = self.stack.split_off(at);
                self.stack.push(tuple(items)?);
            }
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(tuple(items)?);
            }
            b']' => self.stack.push(Value::List(Rc::default())),
            b'l' => {
                let items = self.pop_mark()?;
                let list = new_list(items)?;
                self.stack.push(list);
            }
            b'}' => self.stack.push(Value::Dict(Rc::default())),
            b'd' => {
                let items = self.pop_mark()?;
                let dict = Value::Dict(Rc::default());
                set_items(&dict, items)?;
                self.stack.push(dict);
            }
            // APPEND, APPENDS
            b'a' => {
                let item = self.pop()?;
                append(self.top()?, vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                append(self.top()?, items)?;
            }
            // SETITEM, SETITEMS
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                set_items(self.top()?, vec![key, value])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                set_items(self.top()?, items)?;
            }
            // BINPUT, LONG_BINPUT, MEMOIZE
            b'q' | b'r' | 0x94 => {
                let index = match opcode {
                    b'q' => input.u8("a memo index")?.into(),
                    b'r' => input.u32("a memo index")?,
                    _ => u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?,
                };
                let top = self.top()?.clone();
                self.memo.insert(index, top);
            }
            // BINGET, LONG_BINGET
            b'h' | b'j' => {
                let index = if opcode == b'h' {
                    input.u8("a memo index")?.into()
                } else {
                    input.u32("a memo index")?
                };
                let value = self
                    .memo
                    .get(&index)
                    .cloned()
                    .ok_or_else(|| format!("memo entry {index} is not defined"))?;
                self.stack.push(value);
            }
            // GLOBAL, STACK_GLOBAL
            b'c' => {
                let module = input.line("a global's module")?;
                let name = input.line("a global's name")?;
                self.stack.push(Value::Global(Rc::new((module, name))));
            }
            0x93 => {
                let name = self.pop()?.str("a global's name")?;
                let module = self.pop()?.str("a global's module")?;
                let global = (module.to_string(), name.to_string());
                self.stack.push(Value::Global(Rc::new(global)));
            }
            // BINPERSID
            b'Q' => {
                let id = self.pop()?;
                let storage = self.persistent_load(&id)?;
                self.stack.push(storage);
            }
            // REDUCE
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let Value::Global(global) = callable else {
                    return Err(format!("cannot call a {}", callable.type_name()));
                };
                let Value::Tuple(args) = args else {
                    return Err("call arguments are not a tuple".to_string());
                };
                let value = reduce(&global.0, &global.1, &args.items)?;
                self.stack.push(value);
            }
            // BUILD: state for an OrderedDict (its `_metadata`) or a tensor is not needed
            b'b' => {
                let _state = self.pop()?;
                let target = self.top()?;
                if !matches!(target, Value::Dict(_) | Value::Tensor(_)) {
                    return Err(format!("cannot set the state of a {}", target.type_name()));
                }
            }
            _ => return Err("unknown or unsupported opcode".to_string()),
        }
        Ok(())
    }

    fn pop(&mut self) -> Fallible<Value> {
        if self
            .marks
            .last()
            .is_some_and(|&mark| mark >= self.stack.len())
        {
            return Err("stack underflow".to_string());
        }
        self.stack
            .pop()
            .ok_or_else(|| "stack underflow".to_string())
    }

    fn top(&self) -> Fallible<&Value> {
        if self
            .marks
            .last()
            .is_some_and(|&mark| mark >= self.stack.len())
        {
            return Err("stack underflow".to_string());
        }
        self.stack
            .last()
            .ok_or_else(|| "stack underflow".to_string())
    }

    /// Everything above the last MARK.
    fn pop_mark(&mut self) -> Fallible<Vec<Value>> {
        let mark = self.marks.pop().ok_or("no MARK to pop to")?;
        if mark > self.stack.len() {
            return Err("stack underflow".to_string());
        }
        Ok(self.stack.split_off(mark))
    }

    /// `('storage', storage_type, key, location, numel, view_metadata)`.
    fn persistent_load(&mut self, id: &Value) -> Fallible<Value> {
        let fields = id.items("a persistent id")?;
        let typename = match fields.first() {
            Some(Value::Str(s)) => s.to_string(),
            Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => return Err("a persistent id has no type name".to_string()),
        };
        if typename != "storage" {
            return Err(format!(
                "persistent id `{typename}` is not supported (a saved module rather than a \
                 state dict?)"
            ));
        }
        if !(5..=6).contains(&fields.len()) {
            return Err(format!(
                "a storage persistent id has {} fields",
                fields.len()
            ));
        }
        let Value::Global(storage_type) = &fields[1] else {
            return Err("a storage type is not a class".to_string());
        };
        let (module, name) = (&storage_type.0, &storage_type.1);
        let kind = StorageKind::from_global(module, name)
            .ok_or_else(|| format!("unsupported storage type `{module}.{name}`"))?;
        let key = storage_key(&fields[2]).ok_or("a storage key is not a string")?;
        let numel = u64::try_from(fields[4].int("a storage size")?)
            .map_err(|_| "a storage has a negative size".to_string())?;
        match self.storages.get(&key) {
            Some(known) if known.kind != kind => {
                return Err(format!(
                    "storage `{key}` is declared as both {} and {}",
                    known.kind.name(),
                    kind.name()
                ));
            }
            Some(_) => {}
            None => {
                self.storages
                    .insert(key.clone(), StorageDecl { kind, numel });
            }
        }
        let view = match fields.get(5) {
            None | Some(Value::None) => None,
            Some(view) => {
                let view = view.items("a storage view")?;
                let [_, offset, len] = view.as_slice() else {
                    return Err("a storage view does not have 3 fields".to_string());
                };
                let (offset, len) = (offset.int("a view offset")?, len.int("a view size")?);
                if offset < 0 || len < 0 {
                    return Err("a storage view has a negative offset or size".to_string());
                }
                Some((offset, len))
            }
        };
        Ok(Value::Storage(Rc::new(StorageRef { key, view })))
    }
}

/// The value of LONG1/LONG4 bytes (little-endian two's complement).
fn long(bytes: &[u8]) -> Value {
    if bytes.len() <= 8 {
        let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut buffer = [fill; 8];
        buffer[..bytes.len()].copy_from_slice(bytes);
        Value::Int(i64::from_le_bytes(buffer))
    } else {
        Value::BigInt(bytes.into())
    }
}

fn new_list(items: Vec<Value>) -> Fallible<Value> {
    let list = Value::List(Rc::default());
    append(&list, items)?;
    Ok(list)
}

fn append(target: &Value, items: Vec<Value>) -> Fallible<()> {
    let Value::List(list) = target else {
        return Err(format!("cannot append to a {}", target.type_name()));
    };
    if list.borrow().sealed {
        return Err("cannot change a list already inside another container".to_string());
    }
    if items.iter().any(|item| item.is_same(target)) {
        return Err("a list cannot contain itself".to_string());
    }
    let depth = depth_after(list.borrow().depth, &items)?;
    items.iter().for_each(Value::seal);
    let mut list = list.borrow_mut();
    list.depth = depth;
    list.items.extend(items);
    Ok(())
}

fn set_items(target: &Value, items: Vec<Value>) -> Fallible<()> {
    let Value::Dict(dict) = target else {
        return Err(format!("cannot set items of a {}", target.type_name()));
    };
    if !items.chunks_exact(2).remainder().is_empty() {
        return Err("odd number of dict keys and values".to_string());
    }
    if dict.borrow().sealed {
        return Err("cannot change a dict already inside another container".to_string());
    }
    if items.iter().any(|item| item.is_same(target)) {
        return Err("a dict cannot contain itself".to_string());
    }
    let depth = depth_after(dict.borrow().depth, &items)?;
    items.iter().for_each(Value::seal);
    let mut dict = dict.borrow_mut();
    dict.depth = depth;
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        dict.entries.push((key, value));
    }
    Ok(())
}

/// The calls torch state dicts make; anything else is refused.
fn reduce(module: &str, name: &str, args: &[Value]) -> Fallible<Value> {
    let arity = |expected: &[usize]| {
        if expected.contains(&args.len()) {
            Ok(())
        } else {
            Err(format!(
                "`{module}.{name}` called with {} arguments",
                args.len()
            ))
        }
    };
    match (module, name) {
        ("collections", "OrderedDict") => {
            arity(&[0, 1])?;
            let dict = Value::Dict(Rc::default());
            // Python 2 passed the items as a list of [key, value] pairs
            if let Some(pairs) = args.first() {
                let mut items = Vec::new();
                for pair in pairs.items("OrderedDict's items")? {
                    let pair = pair.items("an OrderedDict item")?;
                    let [key, value] = <[Value; 2]>::try_from(pair)
                        .map_err(|_| "an OrderedDict item is not a pair".to_string())?;
                    items.extend([key, value]);
                }
                set_items(&dict, items)?;
            }
            Ok(dict)
        }
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            if name == "_rebuild_tensor" {
                arity(&[4])?;
            } else {
                arity(&[6, 7])?;
            }
            let Value::Storage(storage) = &args[0] else {
                return Err(format!("a tensor's storage is a {}", args[0].type_name()));
            };
            let offset = args[1].int("a tensor's storage offset")?;
            if offset < 0 {
                return Err("a tensor has a negative storage offset".to_string());
            }
            let size = args[2].ints("a tensor's size")?;
            let stride = args[3].ints("a tensor's stride")?;
            if size.len() != stride.len() {
                return Err("a tensor's size and stride differ in length".to_string());
            }
            Ok(Value::Tensor(Rc::new(TensorRef {
                storage: Rc::clone(storage),
                offset,
                size,
                stride,
            })))
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            arity(&[3, 4])?;
            match &args[0] {
                tensor @ Value::Tensor(_) => Ok(tensor.clone()),
                other => Err(format!("a parameter's data is a {}", other.type_name())),
            }
        }
        ("torch", "Size") => {
            arity(&[1])?;
            tuple(args[0].items("torch.Size's argument")?)
        }
        _ => Err(format!("unsupported object `{module}.{name}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pickle(body: &[u8]) -> Vec<u8> {
        let mut out = b"\x80\x02".to_vec();
        out.extend_from_slice(body);
        out.push(b'.');
        out
    }

    fn load(bytes: &[u8]) -> Fallible<Value> {
        Unpickler::new(&mut Input { bytes, pos: 0 }).load()
    }

    #[test]
    fn longs_decode_as_two_s_complement() {
        assert!(matches!(long(&[]), Value::Int(0)));
        assert!(matches!(long(&[0xff]), Value::Int(-1)));
        assert!(matches!(long(&[0x00, 0x80]), Value::Int(-32768)));
        assert!(matches!(long(&[0xff, 0x00]), Value::Int(255)));
        assert!(matches!(long(&MAGIC_NUMBER), Value::BigInt(_)));
    }

    #[test]
    fn self_containing_and_too_deep_structures_are_refused() {
        // a list appended to itself
        let error = load(&pickle(b"]q\x00h\x00a")).unwrap_err();
        assert!(error.contains("itself"), "{error}");
        // a list changed after it went inside another
        let error = load(&pickle(b"]q\x00]h\x00ah\x00K\x01a")).unwrap_err();
        assert!(error.contains("already inside"), "{error}");
        // 100 nested lists
        let mut body = b"]".repeat(100);
        body.extend(b"a".repeat(99));
        let error = load(&pickle(&body)).unwrap_err();
        assert!(error.contains("nest deeper"), "{error}");
        let mut body = b"]".repeat(MAX_DEPTH);
        body.extend(b"a".repeat(MAX_DEPTH - 1));
        assert_eq!(load(&pickle(&body)).unwrap().depth(), MAX_DEPTH);
    }

    #[test]
    fn unknown_opcodes_and_callables_name_their_offset() {
        let error = load(&pickle(b"K\x01\xff")).unwrap_err();
        assert!(error.contains("opcode 0xff at byte 4"), "{error}");
        let error = load(&pickle(b"cos\nsystem\nX\x02\x00\x00\x00ls\x85R")).unwrap_err();
        assert!(error.contains("`os.system`"), "{error}");
        assert!(error.contains("at byte 21"), "{error}");
        // underflow past a MARK
        let error = load(&pickle(b"K\x01(a")).unwrap_err();
        assert!(error.contains("underflow"), "{error}");
    }

    #[test]
    fn marks_pops_and_dups_follow_pickle() {
        let value = load(&pickle(b"(K\x01K\x021K\x032\x86")).unwrap();
        let Value::Tuple(t) = value else { panic!() };
        assert!(matches!(t.items[..], [Value::Int(3), Value::Int(3)]));
        let value = load(&pickle(b"K\x05(0")).unwrap();
        assert!(matches!(value, Value::Int(5)));
    }
}
