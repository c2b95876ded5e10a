//! What torch's pickled objects mean: the few globals a state dict uses, storages named by
//! persistent ids, tensors as views into them, and finding the state dict in the saved object.
//! Shared by both `torch.save` readers ([`super::torch_legacy`], [`super::torch_zip`]), which
//! differ only in where the pickle and the storages' bytes lie.
//!
//! A tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
//! backward_hooks[, metadata])` (PyTorch >= 0.4) or `torch._utils._rebuild_tensor(storage,
//! offset, size, stride)` (0.3); a parameter wraps one in `_rebuild_parameter`. `storage` is a
//! persistent id (`BINPERSID`) of `('storage', storage_type, key, location, numel[,
//! view_metadata])`: `storage_type` a class such as `torch.FloatStorage`, `key` a string naming
//! the storage (tensors sharing one use the same key), `location` a device (`cpu`, `cuda:0`;
//! ignored here, everything lands on the CPU), and `view_metadata` (legacy files only) either
//! `None` or `(view_key, offset, size)` in elements for a view into the storage (0.3-era
//! files). A state dict is a `collections.OrderedDict`: Python 3 reduces it with no arguments
//! and fills it with `SETITEMS`; Python 2 passed a list of `[name, tensor]` pairs. Its
//! `_metadata` attribute follows as a `BUILD` and is ignored.
//!
//! Globals are an allowlist ([`find_class`]): the rebuild functions above, `torch.Size`, the
//! storage classes and `collections.OrderedDict`. Any other (`os.system`, `builtins.eval`) is
//! refused where the pickle names it, before anything could call it.
//!
//! The saved object is a state dict (a dict or `OrderedDict` of name to tensor) or a training
//! checkpoint, a dict that keeps one under its `state_dict` or `model` entry next to other
//! things (epoch, optimizer state); only the state dict's storages become tensors.
//!
//! Floating-point storages (f16, bf16, f32, f64) become f32 tensors, integer and bool storages
//! keep their type. Tensors are strided views into their storage, as `torch.load` returns them.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use tch::{Kind, Tensor};

use super::pickle::{self, Fallible, Input, Object, Objects, Value};

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
    pub(super) fn load(input: &mut Input) -> Fallible<Self> {
        let mut objects = TorchObjects::default();
        let object = pickle::load(input, &mut objects)?;
        let entries = state_dict_entries(&object)?;
        Ok(Self {
            entries,
            declared: objects.storages,
        })
    }

    /// The state dict in `bytes`, a whole object pickle (a zip archive's `data.pkl`).
    pub(super) fn from_pickle(bytes: &[u8]) -> Fallible<Self> {
        Self::load(&mut Input::new(bytes))
    }

    /// What the pickle declared about storage `key`.
    pub(super) fn declared(&self, key: &str) -> Option<StorageDecl> {
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
fn state_dict_entries(object: &TorchValue) -> Fallible<Vec<(String, Rc<TensorRef>)>> {
    let top_level = "the saved object";
    let Value::Dict(dict) = object else {
        return tensor_entries(object, top_level);
    };
    let all_tensors = dict
        .borrow()
        .entries
        .iter()
        .all(|(_, value)| matches!(value, Value::Object(TorchObject::Tensor(_))));
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
fn tensor_entries(dict: &TorchValue, what: &str) -> Fallible<Vec<(String, Rc<TensorRef>)>> {
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
        let Value::Object(TorchObject::Tensor(tensor)) = value else {
            return Err(format!(
                "entry `{name}` of {what} is {}, not a tensor",
                value.type_name_with_article()
            ));
        };
        entries.push((name.to_string(), Rc::clone(tensor)));
    }
    Ok(entries)
}

/// A storage key as pickles write it: a string, or an int in some old files.
pub(super) fn storage_key<O: Object>(value: &Value<O>) -> Option<String> {
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

/// The functions a state dict's pickle calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callable {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    Size,
}

impl Callable {
    fn name(self) -> &'static str {
        match self {
            Self::OrderedDict => "collections.OrderedDict",
            Self::RebuildTensor => "torch._utils._rebuild_tensor",
            Self::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2",
            Self::RebuildParameter => "torch._utils._rebuild_parameter",
            Self::RebuildParameterWithState => "torch._utils._rebuild_parameter_with_state",
            Self::Size => "torch.Size",
        }
    }
}

/// The objects of a torch pickle beyond plain data.
#[derive(Debug, Clone)]
enum TorchObject {
    Callable(Callable),
    StorageClass(StorageKind),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Object for TorchObject {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Callable(_) => "function",
            Self::StorageClass(_) => "class",
            Self::Storage(_) => "storage",
            Self::Tensor(_) => "tensor",
        }
    }
}

type TorchValue = Value<TorchObject>;

/// The allowlist of globals: the callables above and the storage classes; anything else is
/// refused, naming it.
fn find_class(module: &str, name: &str) -> Fallible<TorchObject> {
    if let Some(kind) = StorageKind::from_global(module, name) {
        return Ok(TorchObject::StorageClass(kind));
    }
    let callable = match (module, name) {
        ("collections", "OrderedDict") => Callable::OrderedDict,
        ("torch._utils", "_rebuild_tensor") => Callable::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Callable::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Callable::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Callable::RebuildParameterWithState,
        ("torch", "Size") => Callable::Size,
        _ => {
            return Err(format!(
                "refused global `{module}.{name}`: a state dict names only torch's tensor \
                 rebuild functions, storage classes and `collections.OrderedDict`"
            ))
        }
    };
    Ok(TorchObject::Callable(callable))
}

/// The meaning of torch's objects while one pickle loads; collects the storages declared.
#[derive(Default)]
struct TorchObjects {
    /// Every storage key a persistent id declared.
    storages: HashMap<String, StorageDecl>,
}

impl Objects for TorchObjects {
    type Object = TorchObject;

    fn find_class(&mut self, module: &str, name: &str) -> Fallible<TorchObject> {
        find_class(module, name)
    }

    fn call(&mut self, callable: &TorchObject, args: &[TorchValue]) -> Fallible<TorchValue> {
        let TorchObject::Callable(callable) = *callable else {
            return Err(format!("cannot call a {}", callable.type_name()));
        };
        let arity = |expected: &[usize]| {
            if expected.contains(&args.len()) {
                Ok(())
            } else {
                Err(format!(
                    "`{}` called with {} arguments",
                    callable.name(),
                    args.len()
                ))
            }
        };
        match callable {
            Callable::OrderedDict => {
                arity(&[0, 1])?;
                let dict = Value::new_dict();
                // Python 2 passed the items as a list of [key, value] pairs
                if let Some(pairs) = args.first() {
                    let mut items = Vec::new();
                    for pair in pairs.items("OrderedDict's items")? {
                        let pair = pair.items("an OrderedDict item")?;
                        let [key, value] = <[TorchValue; 2]>::try_from(pair)
                            .map_err(|_| "an OrderedDict item is not a pair".to_string())?;
                        items.extend([key, value]);
                    }
                    dict.set_items(items)?;
                }
                Ok(dict)
            }
            Callable::RebuildTensor | Callable::RebuildTensorV2 => {
                if callable == Callable::RebuildTensor {
                    arity(&[4])?;
                } else {
                    arity(&[6, 7])?;
                }
                let Value::Object(TorchObject::Storage(storage)) = &args[0] else {
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
                Ok(Value::Object(TorchObject::Tensor(Rc::new(TensorRef {
                    storage: Rc::clone(storage),
                    offset,
                    size,
                    stride,
                }))))
            }
            Callable::RebuildParameter | Callable::RebuildParameterWithState => {
                arity(&[3, 4])?;
                match &args[0] {
                    tensor @ Value::Object(TorchObject::Tensor(_)) => Ok(tensor.clone()),
                    other => Err(format!("a parameter's data is a {}", other.type_name())),
                }
            }
            Callable::Size => {
                arity(&[1])?;
                Value::tuple(args[0].items("torch.Size's argument")?)
            }
        }
    }

    /// `('storage', storage_type, key, location, numel[, view_metadata])`.
    fn persistent_load(&mut self, id: &TorchValue) -> Fallible<TorchValue> {
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
        let Value::Object(TorchObject::StorageClass(kind)) = fields[1] else {
            return Err("a storage type is not a storage class".to_string());
        };
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
        Ok(Value::Object(TorchObject::Storage(Rc::new(StorageRef {
            key,
            view,
        }))))
    }

    /// State for an `OrderedDict` (its `_metadata`) or a tensor is not needed.
    fn build(&mut self, target: &TorchValue, _state: TorchValue) -> Fallible<()> {
        if !matches!(
            target,
            Value::Dict(_) | Value::Object(TorchObject::Tensor(_))
        ) {
            return Err(format!("cannot set the state of a {}", target.type_name()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::pickle::tests::pickle;

    fn load(bytes: &[u8]) -> Fallible<TorchValue> {
        pickle::load(&mut Input::new(bytes), &mut TorchObjects::default())
    }

    #[test]
    fn globals_outside_the_allowlist_are_refused_where_they_are_named() {
        // os.system('ls'): refused at the GLOBAL (byte 2), before the REDUCE could call it
        let error = load(&pickle(b"cos\nsystem\nX\x02\x00\x00\x00ls\x85R")).unwrap_err();
        assert!(error.contains("`os.system`"), "{error}");
        assert!(error.contains("refused"), "{error}");
        assert!(error.contains("at byte 2"), "{error}");
        // builtins.eval through STACK_GLOBAL (protocol 4), named and never called
        let bytes = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
        let error = load(bytes).unwrap_err();
        assert!(error.contains("`builtins.eval`"), "{error}");
        assert!(error.contains("opcode 0x93 at byte 18"), "{error}");
        // a storage class of another module
        let error = load(&pickle(b"cnumpy\nFloatStorage\n")).unwrap_err();
        assert!(error.contains("`numpy.FloatStorage`"), "{error}");
    }

    #[test]
    fn allowed_globals_build_a_state_dict() {
        // OrderedDict([('w', _rebuild_tensor(('storage', FloatStorage, '0', 'cpu', 6), 1,
        // (2, 2), (2, 1)))]): the Python 2 way, reduced with a list of pairs
        let body = b"ccollections\nOrderedDict\n\
            (((U\x01wctorch._utils\n_rebuild_tensor\n\
            ((U\x07storagectorch\nFloatStorage\nU\x010U\x03cpuK\x06tQ\
            K\x01K\x02K\x02\x86K\x02K\x01\x86tRtltR";
        let mut objects = TorchObjects::default();
        let value = pickle::load(&mut Input::new(&pickle(body)), &mut objects).unwrap();
        let entries = state_dict_entries(&value).unwrap();
        assert_eq!(entries.len(), 1);
        let (name, tensor) = &entries[0];
        assert_eq!(name, "w");
        assert_eq!(
            (tensor.offset, &tensor.size[..], &tensor.stride[..]),
            (1, &[2, 2][..], &[2, 1][..])
        );
        let declared = objects.storages["0"];
        assert_eq!((declared.kind, declared.numel), (StorageKind::Float, 6));
        // its data: the view reaches elements 1..5 of the six
        let storage = Tensor::from_slice(&[0f32, 1., 2., 3., 4., 5.]);
        let state_dict = PickledStateDict {
            entries,
            declared: objects.storages,
        };
        let tensors = state_dict
            .into_tensors(&HashMap::from([("0".to_string(), storage)]))
            .unwrap();
        let values = Vec::<f32>::try_from(tensors[0].1.flatten(0, -1)).unwrap();
        assert_eq!(values, [1., 2., 3., 4.]);
    }
}
