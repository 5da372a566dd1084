//! The daemon's memory at its cache bound, `target/loadtest/memory.json`, as
//! `loadtest/memory.sh` writes it.

use serde::Deserialize;

/// Format version this reader understands.
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Memory {
    pub format: u32,
    /// `cache_bytes`.
    pub bound_bytes: u64,
    /// RSS once the daemon answered one request, the cache empty.
    pub base_bytes: u64,
    /// RSS at the end of the run.
    pub rss_bytes: u64,
    /// Verified entries at the end, and what the cache counted for them.
    pub entries: u64,
    pub cache_bytes: u64,
    /// Distinct tokens sent, each once.
    pub tokens: u64,
}

impl Memory {
    pub fn parse(text: &str) -> Result<Memory, String> {
        let memory: Memory = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if memory.format != FORMAT {
            return Err(format!(
                "format {} (this reader knows {FORMAT})",
                memory.format
            ));
        }
        Ok(memory)
    }

    /// What the RSS may reach: the bound and a tenth, over the base.
    pub fn limit(&self) -> u64 {
        self.bound_bytes + self.bound_bytes / 10 + self.base_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_memory_sh_writes() {
        let text = r#"{"format": 1, "bound_bytes": 536870912, "base_bytes": 22020096,
            "rss_bytes": 564133888, "entries": 286272, "cache_bytes": 536870000,
            "tokens": 1600000}"#;
        let m = Memory::parse(text).expect("valid");
        assert_eq!(m.entries, 286_272);
        assert_eq!(m.limit(), 536_870_912 + 53_687_091 + 22_020_096);
        assert!(Memory::parse(&text.replace("\"format\": 1", "\"format\": 2")).is_err());
        assert!(Memory::parse("{}").is_err());
    }
}
