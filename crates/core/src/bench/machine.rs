//! What a result records about where it ran: the machine, and the model's quantization.

use crate::config::ServiceSpec;
use mlxbox_api::bench::report::MachineInfo;

/// CPU (Apple silicon: the chip), cores, RAM, OS.
pub fn machine_info() -> MachineInfo {
    use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .ok();
    let cpu = sys
        .as_ref()
        .and_then(|s| s.cpus().first().map(|c| c.brand().trim().to_string()))
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "unknown".into());
    MachineInfo {
        cpu,
        cores: sys.as_ref().map(|s| s.cpus().len() as u32).unwrap_or(0),
        memory_bytes: sys.as_ref().map(|s| s.total_memory()).unwrap_or(0),
        os: System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
        arch: System::cpu_arch(),
        hostname: System::host_name().ok(),
    }
}

/// The model's config.json, when the model is on disk (a local path or the Hugging Face cache).
pub fn model_config(spec: &ServiceSpec) -> Option<serde_json::Value> {
    let hub = crate::estimate::service_hub(spec);
    let dir = crate::estimate::locate_model(spec.model.as_deref()?, &hub)?;
    read_config(&dir)
}

/// A model directory's config.json (at most 4 MiB: it is a few KB; anything bigger is not one).
pub fn read_config(dir: &std::path::Path) -> Option<serde_json::Value> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(dir.join("config.json"))
        .ok()?
        .take(4 << 20)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

/// "4-bit (group 64)" from mlx's `quantization` block, else the weights' dtype ("bfloat16").
pub fn quantization(config: &serde_json::Value) -> Option<String> {
    let q = config
        .get("quantization")
        .or_else(|| config.get("quantization_config"));
    if let Some(bits) = q.and_then(|q| q.get("bits")).and_then(|b| b.as_u64()) {
        let group = q.and_then(|q| q.get("group_size")).and_then(|g| g.as_u64());
        return Some(match group {
            Some(g) => format!("{bits}-bit (group {g})"),
            None => format!("{bits}-bit"),
        });
    }
    if let Some(m) = q
        .and_then(|q| q.get("quant_method"))
        .and_then(|m| m.as_str())
    {
        return Some(m.to_string());
    }
    config
        .get("torch_dtype")
        .or_else(|| config.get("dtype"))
        .and_then(|d| d.as_str())
        .map(str::to_string)
}

/// The context the service can take: `context_length` in settings.toml, else the model's
/// `max_position_embeddings`. `None` when neither is known.
pub fn context_tokens(spec: &ServiceSpec, config: Option<&serde_json::Value>) -> Option<u64> {
    spec.context_length.map(u64::from).or_else(|| {
        config?
            .get("max_position_embeddings")
            .and_then(|v| v.as_u64())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantization_from_config() {
        assert_eq!(
            quantization(&json!({"quantization": {"bits": 4, "group_size": 64}})).as_deref(),
            Some("4-bit (group 64)")
        );
        assert_eq!(
            quantization(&json!({"quantization_config": {"quant_method": "mxfp4"}})).as_deref(),
            Some("mxfp4")
        );
        assert_eq!(
            quantization(&json!({"torch_dtype": "bfloat16"})).as_deref(),
            Some("bfloat16")
        );
        assert_eq!(quantization(&json!({})), None);
    }

    #[test]
    fn machine_is_described() {
        let m = machine_info();
        assert!(m.memory_bytes > 0 && m.cores > 0, "{m:?}");
        assert!(!m.os.is_empty() && !m.arch.is_empty());
    }
}
