//! A small unpickler: the stack machine of Python's pickle protocols 2 to 5, for the opcodes
//! `torch.save` files use, knowing nothing of torch.
//!
//! It builds plain values (None, bools, ints, floats, strings, bytes, tuples, lists, dicts) and
//! hands everything that would run code in Python to an [`Objects`] implementation: a global's
//! lookup (`GLOBAL`, `STACK_GLOBAL`), a call (`REDUCE`), a persistent id (`BINPERSID`) and a
//! `BUILD`. What those make is that implementation's own [`Object`] type (see
//! [`super::state_dict`] for torch's); [`PlainData`] refuses them all.
//!
//! Anything unknown is an error naming the opcode and its byte offset, as is any read past the
//! end: malformed input never panics. Containers may be nested at most [`MAX_DEPTH`] deep and
//! cannot be modified once placed inside another, so no input can build a cycle or a structure
//! too deep to drop.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::rc::Rc;

/// Errors as text; the readers add the file's name and format.
pub(super) type Fallible<T> = std::result::Result<T, String>;

/// How deeply containers may nest; a state dict needs 4.
pub(super) const MAX_DEPTH: usize = 64;

/// What an [`Objects`] implementation makes of globals, calls and persistent ids.
pub(super) trait Object: Clone + Debug {
    /// The type's name for messages: "tensor", "storage".
    fn type_name(&self) -> &'static str;
}

/// The meaning of everything a pickle cannot express as plain data.
pub(super) trait Objects {
    type Object: Object;

    /// `GLOBAL module name`: the class or function, or an error refusing it.
    fn find_class(&mut self, module: &str, name: &str) -> Fallible<Self::Object>;

    /// `REDUCE`: `callable(*args)`, where `callable` came from [`Objects::find_class`].
    fn call(
        &mut self,
        callable: &Self::Object,
        args: &[Value<Self::Object>],
    ) -> Fallible<Value<Self::Object>>;

    /// `BINPERSID`: the object a persistent id names.
    fn persistent_load(&mut self, id: &Value<Self::Object>) -> Fallible<Value<Self::Object>>;

    /// `BUILD`: sets `target`'s state (`__setstate__`).
    fn build(&mut self, target: &Value<Self::Object>, state: Value<Self::Object>) -> Fallible<()>;
}

/// No objects at all: for pickles of plain data (a legacy file's header and storage keys).
pub(super) struct PlainData;

/// The object type of [`PlainData`]: there are none.
#[derive(Debug, Clone)]
pub(super) enum NoObject {}

impl Object for NoObject {
    fn type_name(&self) -> &'static str {
        match *self {}
    }
}

impl Objects for PlainData {
    type Object = NoObject;

    fn find_class(&mut self, module: &str, name: &str) -> Fallible<NoObject> {
        Err(format!(
            "global `{module}.{name}` where only plain data may be"
        ))
    }

    fn call(&mut self, callable: &NoObject, _: &[Value<NoObject>]) -> Fallible<Value<NoObject>> {
        match *callable {}
    }

    fn persistent_load(&mut self, _: &Value<NoObject>) -> Fallible<Value<NoObject>> {
        Err("a persistent id where only plain data may be".to_string())
    }

    fn build(&mut self, target: &Value<NoObject>, _: Value<NoObject>) -> Fallible<()> {
        Err(format!("cannot set the state of a {}", target.type_name()))
    }
}

/// A pickled value; `O` is what the [`Objects`] implementation made.
#[derive(Debug, Clone)]
pub(super) enum Value<O> {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64, as its little-endian two's-complement bytes.
    BigInt(Rc<[u8]>),
    /// A float (no torch state dict needs its value).
    Float,
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Tuple<O>>),
    List(Rc<RefCell<List<O>>>),
    Dict(Rc<RefCell<Dict<O>>>),
    Object(O),
}

#[derive(Debug)]
pub(super) struct Tuple<O> {
    pub(super) items: Vec<Value<O>>,
    depth: usize,
}

#[derive(Debug)]
pub(super) struct List<O> {
    pub(super) items: Vec<Value<O>>,
    depth: usize,
    sealed: bool,
}

#[derive(Debug)]
pub(super) struct Dict<O> {
    /// In insertion order; a repeated key appears again (the last one counts, as in Python).
    pub(super) entries: Vec<(Value<O>, Value<O>)>,
    depth: usize,
    sealed: bool,
}

impl<O: Object> Value<O> {
    pub(super) fn new_list() -> Self {
        Value::List(Rc::new(RefCell::new(List {
            items: Vec::new(),
            depth: 0,
            sealed: false,
        })))
    }

    pub(super) fn new_dict() -> Self {
        Value::Dict(Rc::new(RefCell::new(Dict {
            entries: Vec::new(),
            depth: 0,
            sealed: false,
        })))
    }

    /// A tuple of `items`, which may no longer change.
    pub(super) fn tuple(items: Vec<Value<O>>) -> Fallible<Self> {
        let depth = depth_after(0, &items)?;
        items.iter().for_each(Value::seal);
        Ok(Value::Tuple(Rc::new(Tuple { items, depth })))
    }

    /// The type's name with an article, for messages: "an int", "a tensor", "None".
    pub(super) fn type_name_with_article(&self) -> String {
        match self {
            Value::None => "None".to_string(),
            Value::Int(_) | Value::BigInt(_) => "an int".to_string(),
            other => format!("a {}", other.type_name()),
        }
    }

    pub(super) fn type_name(&self) -> &'static str {
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
            Value::Object(object) => object.type_name(),
        }
    }

    /// Nesting depth: 0 for scalars, 1 + the deepest item for containers.
    pub(super) fn depth(&self) -> usize {
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

    fn is_same(&self, other: &Value<O>) -> bool {
        match (self, other) {
            (Value::List(a), Value::List(b)) => Rc::ptr_eq(a, b),
            (Value::Dict(a), Value::Dict(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub(super) fn int(&self, what: &str) -> Fallible<i64> {
        match self {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(i64::from(*b)),
            other => Err(format!("{what} is a {}, not an int", other.type_name())),
        }
    }

    pub(super) fn str(&self, what: &str) -> Fallible<Rc<str>> {
        match self {
            Value::Str(s) => Ok(Rc::clone(s)),
            other => Err(format!("{what} is a {}, not a string", other.type_name())),
        }
    }

    /// The items of a tuple or list.
    pub(super) fn items(&self, what: &str) -> Fallible<Vec<Value<O>>> {
        match self {
            Value::Tuple(t) => Ok(t.items.clone()),
            Value::List(l) => Ok(l.borrow().items.clone()),
            other => Err(format!("{what} is a {}, not a tuple", other.type_name())),
        }
    }

    /// The items of a tuple or list of non-negative ints.
    pub(super) fn ints(&self, what: &str) -> Fallible<Vec<i64>> {
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

    /// Appends `items` to this list.
    pub(super) fn append(&self, items: Vec<Value<O>>) -> Fallible<()> {
        let Value::List(list) = self else {
            return Err(format!("cannot append to a {}", self.type_name()));
        };
        if list.borrow().sealed {
            return Err("cannot change a list already inside another container".to_string());
        }
        if items.iter().any(|item| item.is_same(self)) {
            return Err("a list cannot contain itself".to_string());
        }
        let depth = depth_after(list.borrow().depth, &items)?;
        items.iter().for_each(Value::seal);
        let mut list = list.borrow_mut();
        list.depth = depth;
        list.items.extend(items);
        Ok(())
    }

    /// Adds `items`, alternately keys and values, to this dict.
    pub(super) fn set_items(&self, items: Vec<Value<O>>) -> Fallible<()> {
        let Value::Dict(dict) = self else {
            return Err(format!("cannot set items of a {}", self.type_name()));
        };
        if !items.chunks_exact(2).remainder().is_empty() {
            return Err("odd number of dict keys and values".to_string());
        }
        if dict.borrow().sealed {
            return Err("cannot change a dict already inside another container".to_string());
        }
        if items.iter().any(|item| item.is_same(self)) {
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
}

fn depth_after<O: Object>(depth: usize, items: &[Value<O>]) -> Fallible<usize> {
    let deepest = items.iter().map(Value::depth).max().unwrap_or(0);
    let depth = depth.max(deepest + 1);
    if depth > MAX_DEPTH {
        return Err(format!("containers nest deeper than {MAX_DEPTH}"));
    }
    Ok(depth)
}

/// Bounds-checked reads from a file's bytes.
pub(super) struct Input<'a> {
    bytes: &'a [u8],
    /// Offset of the next byte.
    pub(super) pos: usize,
}

impl<'a> Input<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(super) fn take(&mut self, n: usize, what: &str) -> Fallible<&'a [u8]> {
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

    pub(super) fn u64(&mut self, what: &str) -> Fallible<u64> {
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

/// Reads one pickle from `input` (up to and including its STOP) and returns its value.
pub(super) fn load<R: Objects>(input: &mut Input, objects: &mut R) -> Fallible<Value<R::Object>> {
    Unpickler {
        input,
        objects,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .load()
}

/// One pickle's worth of the stack machine.
struct Unpickler<'i, 'a, 'r, R: Objects> {
    input: &'i mut Input<'a>,
    objects: &'r mut R,
    stack: Vec<Value<R::Object>>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value<R::Object>>,
}

impl<R: Objects> Unpickler<'_, '_, '_, R> {
    fn load(&mut self) -> Fallible<Value<R::Object>> {
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
            b')' => self.stack.push(Value::tuple(Vec::new())?),
            // TUPLE1, TUPLE2, TUPLE3
            0x85..=0x87 => {
                let n = usize::from(opcode - 0x84);
                let at = self.stack.len().checked_sub(n).ok_or("stack underflow")?;
                if self.marks.last().is_some_and(|&mark| mark > at) {
                    return Err("stack underflow".to_string());
                }
                let items = self.stack.split_off(at);
                self.stack.push(Value::tuple(items)?);
            }
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::tuple(items)?);
            }
            b']' => self.stack.push(Value::new_list()),
            b'l' => {
                let items = self.pop_mark()?;
                let list = Value::new_list();
                list.append(items)?;
                self.stack.push(list);
            }
            b'}' => self.stack.push(Value::new_dict()),
            b'd' => {
                let items = self.pop_mark()?;
                let dict = Value::new_dict();
                dict.set_items(items)?;
                self.stack.push(dict);
            }
            // APPEND, APPENDS
            b'a' => {
                let item = self.pop()?;
                self.top()?.append(vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.top()?.append(items)?;
            }
            // SETITEM, SETITEMS
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.top()?.set_items(vec![key, value])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.top()?.set_items(items)?;
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
                let global = self.objects.find_class(&module, &name)?;
                self.stack.push(Value::Object(global));
            }
            0x93 => {
                let name = self.pop()?.str("a global's name")?;
                let module = self.pop()?.str("a global's module")?;
                let global = self.objects.find_class(&module, &name)?;
                self.stack.push(Value::Object(global));
            }
            // BINPERSID
            b'Q' => {
                let id = self.pop()?;
                let object = self.objects.persistent_load(&id)?;
                self.stack.push(object);
            }
            // REDUCE
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let Value::Object(callable) = callable else {
                    return Err(format!("cannot call a {}", callable.type_name()));
                };
                let Value::Tuple(args) = args else {
                    return Err("call arguments are not a tuple".to_string());
                };
                let value = self.objects.call(&callable, &args.items)?;
                self.stack.push(value);
            }
            // BUILD
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?.clone();
                self.objects.build(&target, state)?;
            }
            _ => return Err("unknown or unsupported opcode".to_string()),
        }
        Ok(())
    }

    fn pop(&mut self) -> Fallible<Value<R::Object>> {
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

    fn top(&self) -> Fallible<&Value<R::Object>> {
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
    fn pop_mark(&mut self) -> Fallible<Vec<Value<R::Object>>> {
        let mark = self.marks.pop().ok_or("no MARK to pop to")?;
        if mark > self.stack.len() {
            return Err("stack underflow".to_string());
        }
        Ok(self.stack.split_off(mark))
    }
}

/// The value of LONG1/LONG4 bytes (little-endian two's complement).
fn long<O>(bytes: &[u8]) -> Value<O> {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `body` as a protocol 2 pickle: PROTO 2, `body`, STOP.
    pub(in crate::convert) fn pickle(body: &[u8]) -> Vec<u8> {
        let mut out = b"\x80\x02".to_vec();
        out.extend_from_slice(body);
        out.push(b'.');
        out
    }

    fn load_plain(bytes: &[u8]) -> Fallible<Value<NoObject>> {
        load(&mut Input::new(bytes), &mut PlainData)
    }

    #[test]
    fn longs_decode_as_two_s_complement() {
        assert!(matches!(long::<NoObject>(&[]), Value::Int(0)));
        assert!(matches!(long::<NoObject>(&[0xff]), Value::Int(-1)));
        assert!(matches!(
            long::<NoObject>(&[0x00, 0x80]),
            Value::Int(-32768)
        ));
        assert!(matches!(long::<NoObject>(&[0xff, 0x00]), Value::Int(255)));
        let magic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
        assert!(matches!(long::<NoObject>(&magic), Value::BigInt(_)));
    }

    #[test]
    fn self_containing_and_too_deep_structures_are_refused() {
        // a list appended to itself
        let error = load_plain(&pickle(b"]q\x00h\x00a")).unwrap_err();
        assert!(error.contains("itself"), "{error}");
        // a list changed after it went inside another
        let error = load_plain(&pickle(b"]q\x00]h\x00ah\x00K\x01a")).unwrap_err();
        assert!(error.contains("already inside"), "{error}");
        // 100 nested lists
        let mut body = b"]".repeat(100);
        body.extend(b"a".repeat(99));
        let error = load_plain(&pickle(&body)).unwrap_err();
        assert!(error.contains("nest deeper"), "{error}");
        let mut body = b"]".repeat(MAX_DEPTH);
        body.extend(b"a".repeat(MAX_DEPTH - 1));
        assert_eq!(load_plain(&pickle(&body)).unwrap().depth(), MAX_DEPTH);
    }

    #[test]
    fn unknown_opcodes_and_globals_name_their_offset() {
        let error = load_plain(&pickle(b"K\x01\xff")).unwrap_err();
        assert!(error.contains("opcode 0xff at byte 4"), "{error}");
        // plain data names no global at all
        let error = load_plain(&pickle(b"ccollections\nOrderedDict\n)R")).unwrap_err();
        assert!(error.contains("`collections.OrderedDict`"), "{error}");
        assert!(error.contains("at byte 2"), "{error}");
        // underflow past a MARK
        let error = load_plain(&pickle(b"K\x01(a")).unwrap_err();
        assert!(error.contains("underflow"), "{error}");
    }

    #[test]
    fn marks_pops_and_dups_follow_pickle() {
        let value = load_plain(&pickle(b"(K\x01K\x021K\x032\x86")).unwrap();
        let Value::Tuple(t) = value else { panic!() };
        assert!(matches!(t.items[..], [Value::Int(3), Value::Int(3)]));
        let value = load_plain(&pickle(b"K\x05(0")).unwrap();
        assert!(matches!(value, Value::Int(5)));
    }

    #[test]
    fn dicts_keep_insertion_order_and_repeated_keys() {
        // {1: 'a', 2: 'b'} then SETITEM 1: 'c', in protocol 4 with a frame and memoize
        let bytes =
            b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94(K\x01\x8c\x01aK\x02\x8c\x01bu\
              K\x01\x8c\x01cs.";
        let Value::Dict(dict) = load_plain(bytes).unwrap() else {
            panic!("not a dict")
        };
        let entries: Vec<(i64, String)> = dict
            .borrow()
            .entries
            .iter()
            .map(|(k, v)| (k.int("key").unwrap(), v.str("value").unwrap().to_string()))
            .collect();
        assert_eq!(entries, [(1, "a".into()), (2, "b".into()), (1, "c".into())]);
    }
}
