//! The `torch.save` readers (legacy and zip format) against files PyTorch wrote:
//! `tests/reference/legacy_pth.py` (run with the project venv's python) saves a pytorch/examples
//! state dict in both formats, tensors that share storages through views, every storage type
//! old files use, a byte-for-byte PyTorch 0.3 / Python 2 file that torch.load accepts, zip files
//! of `module.state_dict()` OrderedDicts (which libtorch's zip reader fails on), training
//! checkpoints, a torchvision-layout VGG-16, and damaged zip files.

mod support;

use support::*;

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use models::convert::pth::{import_pytorch_examples, read_torch_save};
use models::convert::torch_legacy::{parse_torch_legacy, read_torch_legacy};
use models::convert::torch_zip::{parse_torch_zip, read_torch_zip};
use models::{Model, NetSpec, Vgg, VggKind};
use tch::{Device, Kind, Tensor};

/// The script's output folder, written once per test process.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        run_reference(
            "legacy_pth.py",
            &[dir.path().as_os_str(), "20240607".as_ref()],
        );
        dir
    })
    .path()
}

/// Expected tensors in their saved dtypes, floats as f32 like the reader gives them.
fn expected(file: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(reference_dir().join(file))
        .unwrap()
        .into_iter()
        .map(|(name, tensor)| {
            let tensor = if tensor.is_floating_point() {
                tensor.to_kind(Kind::Float)
            } else {
                tensor
            };
            (name, tensor)
        })
        .collect()
}

fn assert_same(name: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.kind(), expected.kind(), "{name}: kind");
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    assert!(actual.equal(expected), "{name}: values differ");
}

fn relative_error(actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.size(), expected.size(), "shapes differ");
    let diff = (actual - expected).norm().double_value(&[]);
    diff / expected.norm().double_value(&[])
}

#[test]
fn legacy_state_dict_equals_the_zip_one_and_converts() {
    let legacy_path = reference_dir().join("johnson_legacy.pth");
    let legacy = read_torch_legacy(&legacy_path).unwrap();
    let zip = Tensor::loadz_multi(reference_dir().join("johnson_zip.pth")).unwrap();
    let legacy_names: Vec<&str> = legacy.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        legacy_names[..3],
        ["conv1.conv2d.weight", "conv1.conv2d.bias", "in1.weight"]
    );
    assert!(legacy_names.contains(&"in1.running_mean"));
    assert!(legacy_names.contains(&"res5.in2.num_batches_tracked"));
    // libtorch gives the zip file's entries sorted by name
    let zip: HashMap<String, Tensor> = zip.into_iter().collect();
    assert_eq!(legacy.len(), zip.len());
    for (name, tensor) in &legacy {
        assert_same(name, tensor, &zip[name]);
    }

    let model = import_pytorch_examples(&legacy_path).unwrap();
    assert_eq!(model.meta.spec, NetSpec::johnson());
    assert_eq!(model.meta.styles, vec!["johnson_legacy".to_string()]);
    let io = expected("johnson_io.safetensors");
    let style = model.net.style_params(&[1.0]).unwrap();
    let out = model.net.forward(&io["input"], &style).unwrap();
    let error = relative_error(&out, &io["output"]);
    println!("converted legacy johnson: relative L2 error {error:.3e}");
    assert!(error < 1e-5, "relative L2 error {error:.3e}");

    let from_zip = import_pytorch_examples(&reference_dir().join("johnson_zip.pth")).unwrap();
    let style = from_zip.net.style_params(&[1.0]).unwrap();
    let out_zip = from_zip.net.forward(&io["input"], &style).unwrap();
    assert!(
        out.equal(&out_zip),
        "the two formats give different networks"
    );
}

#[test]
fn views_offsets_and_every_storage_type_read_as_torch_load_gives_them() {
    let tensors = read_torch_legacy(&reference_dir().join("views_legacy.pth")).unwrap();
    let expected = expected("views_expected.safetensors");
    let names: Vec<&str> = tensors.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "base",
            "transposed",
            "rows",
            "strided",
            "expanded",
            "half",
            "bfloat16",
            "double",
            "long",
            "int",
            "byte",
            "scalar",
            "empty"
        ]
    );
    for (name, tensor) in &tensors {
        assert_same(name, tensor, &expected[name]);
    }
    let by_name: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    assert_eq!(by_name["transposed"].stride(), vec![1, 8]);
    assert_eq!(by_name["expanded"].stride(), vec![1, 0]);
    assert_eq!(by_name["long"].kind(), Kind::Int64);
    assert_eq!(by_name["int"].kind(), Kind::Int);
    assert_eq!(by_name["byte"].kind(), Kind::Uint8);
    for name in ["half", "bfloat16", "double"] {
        assert_eq!(by_name[name].kind(), Kind::Float, "{name}");
    }
}

#[test]
fn python2_pytorch_0_3_file_reads_as_torch_load_gives_it() {
    let tensors = read_torch_legacy(&reference_dir().join("py2_legacy.pth")).unwrap();
    let expected = expected("py2_expected.safetensors");
    let names: Vec<&str> = tensors.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["conv.weight", "conv.bias", "norm.weight", "norm.steps"]
    );
    for (name, tensor) in &tensors {
        assert_same(name, tensor, &expected[name]);
    }
}

#[test]
fn truncated_and_corrupted_files_give_errors_not_panics() {
    let path = reference_dir().join("views_legacy.pth");
    let bytes = std::fs::read(&path).unwrap();
    // every prefix: each must fail cleanly
    for len in 0..bytes.len() {
        match parse_torch_legacy(&bytes[..len], &path) {
            Err(models::Error::Convert { reason, .. }) => assert!(!reason.is_empty()),
            Err(other) => panic!("cut at {len}: expected Convert, got {other}"),
            Ok(_) => panic!("cut at {len}: a truncated file was accepted"),
        }
    }
    let error = parse_torch_legacy(&bytes[..bytes.len() - 3], &path).unwrap_err();
    assert!(error.to_string().contains("truncated"), "{error}");
    // every byte replaced by a few values: errors or (for harmless changes) tensors, no panic
    let mut corrupted = bytes.clone();
    let mut accepted = 0;
    for i in 0..bytes.len() {
        for value in [0x00, 0x7f, 0xff, bytes[i] ^ 0x01] {
            corrupted[i] = value;
            if parse_torch_legacy(&corrupted, &path).is_ok() {
                accepted += 1;
            }
        }
        corrupted[i] = bytes[i];
    }
    println!("{accepted} corrupted variants still parsed");
}

#[test]
fn files_that_are_not_torch_save_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // deterministic pseudo-random bytes
    let mut state = 0x2545f4914f6cdd1du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    for (name, bytes) in [
        ("noise.pth", noise.as_slice()),
        ("empty.pth", &[][..]),
        ("text.pth", b"hello, world\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        match import_pytorch_examples(&path) {
            Err(error @ models::Error::Convert { .. }) => {
                println!("{error}");
                assert!(
                    error.to_string().contains("not a torch.save file"),
                    "{error}"
                );
                assert!(error.to_string().contains(name), "{error}");
            }
            other => panic!("{name}: expected Convert, got {other:?}"),
        }
    }
    let missing = dir.path().join("missing.pth");
    assert!(matches!(
        import_pytorch_examples(&missing),
        Err(models::Error::Read { .. })
    ));
}

fn names(tensors: &[(String, Tensor)]) -> Vec<&str> {
    tensors.iter().map(|(name, _)| name.as_str()).collect()
}

/// `actual` holds exactly `expected`'s tensors, in the same order.
fn assert_same_list(what: &str, actual: &[(String, Tensor)], expected: &[(String, Tensor)]) {
    assert_eq!(names(actual), names(expected), "{what}: names");
    for ((name, actual), (_, expected)) in actual.iter().zip(expected) {
        assert_same(&format!("{what}: {name}"), actual, expected);
    }
}

/// The converted model's variables equal `expected`'s tensors (which may hold more).
fn assert_model_weights(what: &str, model: &Model, expected: &[(String, Tensor)]) {
    let expected: HashMap<&str, &Tensor> = expected.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let variables = model.vars.variables();
    assert_eq!(variables.len(), model.meta.spec.variables().len(), "{what}");
    for (name, variable) in &variables {
        assert_same(
            &format!("{what}: {name}"),
            variable,
            expected[name.as_str()],
        );
    }
}

fn without_statistics(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    tensors
        .into_iter()
        .filter(|(name, _)| !name.contains(".running_") && !name.ends_with("num_batches_tracked"))
        .collect()
}

#[test]
fn ordered_dict_zip_files_read_exactly_as_the_legacy_one() {
    let legacy = read_torch_legacy(&reference_dir().join("johnson_legacy.pth")).unwrap();
    // the same OrderedDict, with `_metadata`, in the zip format: same tensors, same order
    let ordered = read_torch_save(&reference_dir().join("johnson_ordered_zip.pth")).unwrap();
    assert_same_list("OrderedDict zip", &ordered, &legacy);
    // the plain-dict zip, against the legacy file and (by name) libtorch's own zip reader
    let plain = read_torch_zip(&reference_dir().join("johnson_zip.pth")).unwrap();
    assert_same_list("plain dict zip", &plain, &legacy);
    let libtorch: HashMap<String, Tensor> =
        Tensor::loadz_multi(reference_dir().join("johnson_zip.pth"))
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(libtorch.len(), plain.len());
    for (name, tensor) in &plain {
        assert_same(&format!("libtorch: {name}"), tensor, &libtorch[name]);
    }
    // `net.state_dict()` as saved today: no instance-norm statistics, a prefix of the file stem
    let state_dict_path = reference_dir().join("johnson_state_dict.pth");
    let state_dict = read_torch_save(&state_dict_path).unwrap();
    assert_same_list("state_dict()", &state_dict, &without_statistics(legacy));
    // re-zipped with deflate under another folder name
    let deflated = read_torch_save(&reference_dir().join("deflated.pth")).unwrap();
    assert_same_list("deflated", &deflated, &state_dict);

    let model = import_pytorch_examples(&state_dict_path).unwrap();
    assert_eq!(model.meta.spec, NetSpec::johnson());
    assert_eq!(model.meta.styles, vec!["johnson_state_dict".to_string()]);
    assert_model_weights("converted state_dict()", &model, &state_dict);
    let from_legacy = import_pytorch_examples(&reference_dir().join("johnson_legacy.pth")).unwrap();
    let io = expected("johnson_io.safetensors");
    let out = model
        .net
        .forward(&io["input"], &model.net.style_params(&[1.0]).unwrap())
        .unwrap();
    let out_legacy = from_legacy
        .net
        .forward(&io["input"], &from_legacy.net.style_params(&[1.0]).unwrap())
        .unwrap();
    assert!(out.equal(&out_legacy), "zip and legacy networks differ");
    let error = relative_error(&out, &io["output"]);
    assert!(error < 1e-5, "relative L2 error {error:.3e}");
}

#[test]
fn checkpoints_convert_through_their_state_dict_or_model_entry() {
    let state_dict = read_torch_save(&reference_dir().join("johnson_state_dict.pth")).unwrap();
    // {'state_dict': ..., 'epoch': 3, 'optimizer': Adam state with tensors of its own} (zip)
    // and {'model': ..., 'epoch': 3} (legacy)
    for file in ["checkpoint.pth", "checkpoint_legacy.pth"] {
        let path = reference_dir().join(file);
        let tensors = read_torch_save(&path).unwrap();
        assert_same_list(file, &tensors, &state_dict);
        let model = import_pytorch_examples(&path).unwrap();
        assert_model_weights(file, &model, &state_dict);
    }
    // neither entry: the error names the entry that is not a tensor
    let path = reference_dir().join("not_a_checkpoint.pth");
    match import_pytorch_examples(&path) {
        Err(error @ models::Error::Convert { .. }) => {
            let message = error.to_string();
            println!("{message}");
            assert!(message.contains("entry `weights`"), "{message}");
            assert!(message.contains("a dict, not a tensor"), "{message}");
            assert!(message.contains("`state_dict` or `model`"), "{message}");
        }
        other => panic!("expected Convert, got {other:?}"),
    }
}

#[test]
fn vgg16_loads_from_an_ordered_dict_zip_state_dict() {
    let from_pth = Vgg::load(
        &reference_dir().join("vgg16_ordered.pth"),
        VggKind::Vgg16,
        Device::Cpu,
    )
    .unwrap();
    let from_safetensors = Vgg::load(
        &reference_dir().join("vgg16_ordered.safetensors"),
        VggKind::Vgg16,
        Device::Cpu,
    )
    .unwrap();
    let weights = from_pth.named_tensors();
    assert_eq!(weights.len(), 26);
    assert_same_list("vgg16", &weights, &from_safetensors.named_tensors());
}

#[test]
fn damaged_zip_files_give_clear_errors_without_panics() {
    let path = reference_dir().join("johnson_state_dict.pth");
    let bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    let dir = tempfile::tempdir().unwrap();
    let cut_path = dir.path().join("cut.pth");
    for len in [0, 3, 4, 30, 100, 5000, n / 2, n - 200, n - 22, n - 1] {
        std::fs::write(&cut_path, &bytes[..len]).unwrap();
        match import_pytorch_examples(&cut_path) {
            Err(models::Error::Convert { reason, .. }) => {
                // 4 bytes and more start like a zip archive
                if len >= 4 {
                    assert!(reason.contains("zip-format"), "cut at {len}: {reason}");
                    assert!(reason.contains("truncated"), "cut at {len}: {reason}");
                }
            }
            other => panic!("cut at {len}: expected Convert, got {other:?}"),
        }
    }
    // a changed byte in the storage data fails the entry's checksum
    let mut corrupted = bytes.clone();
    corrupted[n / 2] ^= 0x40;
    let error = parse_torch_zip(&corrupted, &path).unwrap_err().to_string();
    assert!(error.contains("checksum"), "{error}");

    let reason = |file: &str| match read_torch_save(&reference_dir().join(file)) {
        Err(models::Error::Convert { reason, .. }) => {
            println!("{file}: {reason}");
            reason
        }
        other => panic!("{file}: expected Convert, got {other:?}"),
    };
    let missing = reason("missing_storage.pth");
    assert!(missing.contains("storage `0` has no data"), "{missing}");
    assert!(missing.contains("johnson_state_dict/data/0"), "{missing}");
    assert!(reason("big_endian.pth").contains("big-endian files are not supported"));
    let foreign = reason("foreign.pth");
    assert!(foreign.contains("no `notes/data.pkl`"), "{foreign}");
    assert!(foreign.contains("not a torch.save file"), "{foreign}");
}
