//! Embeds `templates/` (what `switchyard connector new` copies) and the served contract into the
//! binary, so an installed `switchyard` needs no repository checkout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Directories that are build output or local tooling, never part of a template.
const SKIP: &[&str] = &[
    "target",
    "node_modules",
    "__pycache__",
    ".venv",
    ".bindings",
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("..")
        .join("templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    for lang in ["rust", "python", "js"] {
        collect(&root.join(lang), &root.join(lang), lang, &mut files);
    }
    files.sort();
    let mut out = String::from("/// (language, path inside the template, contents)\n");
    out.push_str("pub static TEMPLATE_FILES: &[(&str, &str, &[u8])] = &[\n");
    for (lang, rel, abs) in &files {
        let _ = writeln!(out, "    ({lang:?}, {rel:?}, include_bytes!({abs:?})),");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("templates.rs");
    std::fs::write(dest, out).expect("writing templates.rs");
}

fn collect(base: &Path, dir: &Path, lang: &str, files: &mut Vec<(String, String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if !SKIP.contains(&name.as_str()) {
                collect(base, &path, lang, files);
            }
        } else if !name.ends_with(".pyc") {
            let rel = path
                .strip_prefix(base)
                .expect("under base")
                .to_string_lossy()
                .replace('\\', "/");
            files.push((lang.to_string(), rel, path.display().to_string()));
        }
    }
}
