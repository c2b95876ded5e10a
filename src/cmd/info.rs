//! `atelier info`: what this build runs on.

use serde::Serialize;
use std::process::ExitCode;

use super::out;

#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Info {
    atelier_version: &'static str,
    libtorch_version: String,
    libtorch_path: Option<String>,
    cuda_available: bool,
    cuda_device_count: i64,
    cuda_devices: Vec<String>,
    cudnn_available: bool,
    cudnn_version: Option<i64>,
    threads: i32,
    cpu_bf16: bool,
    mkldnn: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cuda_available = tch::Cuda::is_available();
    let cuda_device_count = if cuda_available {
        tch::Cuda::device_count()
    } else {
        0
    };
    let cudnn_available = cuda_available && tch::Cuda::cudnn_is_available();
    let libtorch_dir = loaded_libtorch_dir();
    let info = Info {
        atelier_version: env!("CARGO_PKG_VERSION"),
        libtorch_version: libtorch_dir
            .as_deref()
            .and_then(libtorch_version_at)
            .unwrap_or_else(|| "unknown".to_string()),
        libtorch_path: libtorch_dir.map(|dir| dir.display().to_string()),
        cuda_available,
        cuda_device_count,
        cuda_devices: if cuda_available {
            cuda_device_names()
        } else {
            Vec::new()
        },
        cudnn_available,
        cudnn_version: cudnn_available.then(tch::utils::version_cudnn),
        threads: tch::get_num_threads(),
        cpu_bf16: models::precision::cpu_has_native_bf16().unwrap_or(false),
        mkldnn: tch::utils::has_mkldnn(),
    };
    if args.json {
        out::line(serde_json::to_string(&info)?)?;
    } else {
        out::line(format_args!("atelier        {}", info.atelier_version))?;
        out::line(format_args!("libtorch       {}", info.libtorch_version))?;
        if let Some(path) = &info.libtorch_path {
            out::line(format_args!("libtorch path  {path}"))?;
        }
        out::line(format_args!(
            "cuda           {}",
            yes_no(info.cuda_available)
        ))?;
        out::line(format_args!("cuda devices   {}", info.cuda_device_count))?;
        for (index, name) in info.cuda_devices.iter().enumerate() {
            out::line(format_args!("  cuda:{index}       {name}"))?;
        }
        match info.cudnn_version {
            Some(version) => out::line(format_args!("cudnn          {version}"))?,
            None => out::line("cudnn          no")?,
        }
        out::line(format_args!("threads        {}", info.threads))?;
        out::line(format_args!("cpu bf16       {}", yes_no(info.cpu_bf16)))?;
        out::line(format_args!("mkldnn         {}", yes_no(info.mkldnn)))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

/// The folder of the libtorch actually loaded into this process (not the one built against),
/// found from the memory map: `.../torch/lib/libtorch_cpu.so` gives `.../torch`.
fn loaded_libtorch_dir() -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let lib = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))?;
    Some(std::path::Path::new(lib).parent()?.parent()?.to_path_buf())
}

/// PyPI wheels carry `version.py`; the libtorch zip carries `build-version`.
fn libtorch_version_at(dir: &std::path::Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(dir.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_string());
    }
    let text = std::fs::read_to_string(dir.join("build-version")).ok()?;
    Some(text.trim().to_string())
}

/// libtorch has no C API for device names; `nvidia-smi` sits beside every NVIDIA driver.
fn cuda_device_names() -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}
