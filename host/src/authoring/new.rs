//! `switchyard connector new <name> --lang rust|python|js`: a new connector project from the
//! templates embedded in the binary (`templates/` at build time), with the served contract copied
//! to `<project>/wit/connector.wit`. Placeholders (`templates/README.md`): `{{name}}` the id,
//! `{{Name}}` the display name, `{{sdk_path}}` (Rust) the SDK crate's directory.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The contract this host serves newest (`wit/connector.wit`), as copied into every project.
pub const CONTRACT: &str = include_str!("../../../wit/connector.wit");

/// The SDK crate in the source tree this binary was built from; used when it still exists.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/sdk");

/// A template language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    /// The template directory's name.
    pub fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Lang, String> {
        match s {
            "rust" | "rs" => Ok(Lang::Rust),
            "python" | "py" => Ok(Lang::Python),
            "js" | "javascript" => Ok(Lang::Js),
            other => Err(format!(
                "unknown language `{other}`: choose rust, python or js"
            )),
        }
    }
}

/// Why no project was created. Nothing is written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error("invalid connector name `{0}`: {1}")]
    BadName(String, &'static str),
    #[error("{0} exists and is not an empty directory; choose another --dir or remove it")]
    NotEmpty(String),
    #[error(
        "the Rust template needs the SDK crate `switchyard-connector`: none at {0}; pass \
         --sdk <dir of plugins/sdk> or set SWITCHYARD_SDK (a checkout of the switchyard repository has it)"
    )]
    NoSdk(String),
    #[error("cannot write {0}: {1}")]
    Write(String, std::io::Error),
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: String,
    pub lang: Lang,
    /// The project directory; created (with parents) if missing, must be empty if present.
    pub dir: PathBuf,
    /// (Rust) the SDK crate; default `SWITCHYARD_SDK`, then the tree this binary was built from.
    pub sdk: Option<PathBuf>,
}

/// Checks a connector id: what a manifest `id`, a crate name and a Python/JS string all accept.
pub fn check_name(name: &str) -> Result<(), NewError> {
    let bad = |why| Err(NewError::BadName(name.to_string(), why));
    if name.is_empty() || name.len() > 40 {
        return bad("it must be 1 to 40 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("it must start with a lower-case letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return bad("use only lower-case letters, digits and `-` (e.g. `acme-checks`)");
    }
    if name.ends_with('-') || name.contains("--") {
        return bad("`-` must separate words (no trailing or doubled `-`)");
    }
    Ok(())
}

/// `acme-checks` → `Acme Checks`.
pub fn display_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Creates the project; returns the files written (relative to the project).
pub fn create(project: &NewProject) -> Result<Vec<String>, NewError> {
    check_name(&project.name)?;
    let dir = &project.dir;
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            return Err(NewError::NotEmpty(dir.display().to_string()));
        }
    }
    let sdk = match project.lang {
        Lang::Rust => Some(sdk_path(project.sdk.as_deref())?),
        _ => None,
    };
    let fill = |text: &str| {
        let text = text
            .replace("{{name}}", &project.name)
            .replace("{{Name}}", &display_name(&project.name));
        match &sdk {
            // TOML basic strings: a Windows path's backslashes would be escapes.
            Some(sdk) => text.replace("{{sdk_path}}", &sdk.replace('\\', "/")),
            None => text,
        }
    };
    let mut written = Vec::new();
    let write = |rel: &str, bytes: &[u8], written: &mut Vec<String>| {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| NewError::Write(parent.display().to_string(), e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| NewError::Write(path.display().to_string(), e))?;
        written.push(rel.to_string());
        Ok::<(), NewError>(())
    };
    for (lang, rel, bytes) in TEMPLATE_FILES {
        if *lang != project.lang.dir() {
            continue;
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => write(rel, fill(text).as_bytes(), &mut written)?,
            Err(_) => write(rel, bytes, &mut written)?,
        }
    }
    write("wit/connector.wit", CONTRACT.as_bytes(), &mut written)?;
    if project.lang == Lang::Rust {
        write(".gitignore", b"/target\n", &mut written)?;
    }
    Ok(written)
}

/// The SDK directory, absolute: the given one, else `SWITCHYARD_SDK`, else the source tree's.
fn sdk_path(given: Option<&Path>) -> Result<String, NewError> {
    let env = std::env::var_os("SWITCHYARD_SDK").map(PathBuf::from);
    let candidate = given
        .map(Path::to_path_buf)
        .or(env)
        .unwrap_or_else(|| PathBuf::from(BUILT_FROM_SDK));
    if !candidate.join("Cargo.toml").is_file() {
        return Err(NewError::NoSdk(candidate.display().to_string()));
    }
    let abs = std::fs::canonicalize(&candidate).unwrap_or(candidate);
    Ok(abs.display().to_string())
}

/// What to run next, for the CLI to print.
pub fn next_steps(project: &NewProject) -> String {
    let d = project.dir.display();
    let n = &project.name;
    let wasm = match project.lang {
        Lang::Rust => format!("target/wasm32-wasip2/release/{}.wasm", n.replace('-', "_")),
        _ => format!("{n}.wasm"),
    };
    let build = match project.lang {
        Lang::Rust => "rustup target add wasm32-wasip2\n  cargo build --release --target wasm32-wasip2".to_string(),
        Lang::Python => format!(
            "python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1\n  \
             .venv/bin/componentize-py -d wit -w connector componentize app -o {wasm}"
        ),
        Lang::Js => format!(
            "npm install --save-dev @bytecodealliance/componentize-js@0.23.0 @bytecodealliance/preview2-shim@0.25.0\n  \
             npx componentize-js connector.js --wit wit --world-name connector --disable http fetch-event --out {wasm}"
        ),
    };
    format!(
        "created {d} ({lang} connector `{n}`); next:\n  cd {d}\n  {build}\n  \
         switchyard connector validate {wasm}\n  switchyard connector test {wasm} scenario.json\n\
         See README.md in the project and docs/connectors.md.",
        lang = project.lang.dir()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_displayed() {
        assert!(check_name("acme-checks").is_ok());
        assert!(check_name("a1").is_ok());
        for bad in [
            "",
            "Acme",
            "1acme",
            "acme_checks",
            "acme-",
            "ac--me",
            "acme checks",
            "ac/me",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(display_name("acme-checks"), "Acme Checks");
    }

    #[test]
    fn every_template_is_embedded_with_its_scenario() {
        for lang in ["rust", "python", "js"] {
            assert!(TEMPLATE_FILES
                .iter()
                .any(|(l, p, _)| *l == lang && *p == "scenario.json"));
            assert!(TEMPLATE_FILES
                .iter()
                .any(|(l, p, _)| *l == lang && *p == "README.md"));
        }
    }

    #[test]
    fn a_project_is_filled_in_and_an_existing_directory_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let dir = base.join("acme-checks");
        let project = NewProject {
            name: "acme-checks".into(),
            lang: Lang::Python,
            dir: dir.clone(),
            sdk: None,
        };
        let written = create(&project).unwrap();
        assert!(written.contains(&"wit/connector.wit".to_string()));
        let code = std::fs::read_to_string(dir.join("connector.py")).unwrap();
        assert!(code.contains("id=\"acme-checks\""), "{code}");
        assert!(code.contains("Acme Checks - Pending"));
        assert!(!code.contains("{{"));
        assert_eq!(
            std::fs::read_to_string(dir.join("wit/connector.wit")).unwrap(),
            CONTRACT
        );
        let again = create(&project).unwrap_err();
        assert!(matches!(again, NewError::NotEmpty(_)), "{again}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
