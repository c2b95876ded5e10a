//! The legacy (non-zip) `torch.save` reader against files PyTorch wrote:
//! `tests/reference/legacy_pth.py` (run with the project venv's python) saves a pytorch/examples
//! state dict in both formats, tensors that share storages through views, every storage type
//! old files use, and a byte-for-byte PyTorch 0.3 / Python 2 file that torch.load accepts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use models::convert::pth::import_pytorch_examples;
use models::convert::torch_legacy::{parse_torch_legacy, read_torch_legacy};
use models::NetSpec;
use tch::{Kind, Tensor};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The script's output folder, written once per test process.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let python = workspace().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `make setup-test` (scripts/setup.sh test) first",
            python.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(&python)
            .arg(workspace().join("tests/reference/legacy_pth.py"))
            .arg(dir.path())
            .arg("20240607")
            .status()
            .unwrap();
        assert!(
            status.success(),
            "tests/reference/legacy_pth.py failed: {status}"
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
