//! What an author did, in their own terms: a first line added to a load error or a trap whose
//! raw text is the toolchain's (a wasmtime linker message, componentize-js's generated glue,
//! componentize-py's runtime panic), saying the mistake, where it is, and what to change.

/// A hint for a component the linker refused, if the refusal is a known toolchain mistake.
pub fn load_hint(error: &str) -> Option<&'static str> {
    error.contains("wasi:http/").then_some(
        "the component imports wasi:http, which switchyard does not provide (connectors call out \
         through the contract's outbound-http); a componentize-js build needs \
         `--disable http fetch-event`",
    )
}

/// A hint for a trap, read from the guest's stderr, if it shows a known author mistake.
pub fn trap_hint(stderr: &str) -> Option<String> {
    python_lazy_import(stderr).or_else(|| js_thrown_error(stderr))
}

/// componentize-py bundles only modules imported when it builds (at top level); one first
/// imported inside a call is missing.
fn python_lazy_import(stderr: &str) -> Option<String> {
    let at = stderr.find("ModuleNotFoundError: No module named '")?;
    let module = stderr[at..].split('\'').nth(1)?;
    // The innermost frame of the traceback above it: where the `import` is.
    let frame = stderr[..at]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("File \""))
        .and_then(|l| {
            let (file, rest) = l.split_once('"')?;
            let file = file.trim_start_matches("/0/");
            Some(format!(" ({file}{})", rest.trim_end()))
        })
        .unwrap_or_default();
    Some(format!(
        "the Python code imports module `{module}` inside a call{frame}: componentize-py bundles \
         only the modules imported at top level when it builds; import it at the top of app.py \
         (or of a module app.py imports) and rebuild"
    ))
}

/// componentize-js turns a thrown value into the export's `connector-error`; a thrown `Error`
/// has no `tag` and traps inside the generated glue (initializer.js), which is all the stack shows.
fn js_thrown_error(stderr: &str) -> Option<String> {
    let at = stderr.find("(received `Error: ")?;
    let message = stderr[at + "(received `Error: ".len()..]
        .split("`)")
        .next()?;
    let export = stderr
        .split_once("$")
        .and_then(|(_, rest)| rest.split('@').next())
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|name| format!(" from `{name}`"))
        .unwrap_or_default();
    Some(format!(
        "the JavaScript code threw an Error (\"{message}\"){export}, in your sources (e.g. \
         logic.js; the stack below is componentize-js's generated initializer.js): a thrown Error \
         is a trap; throw {{ tag: 'transient' | 'config' | 'rejected', val: '...' }} to return a \
         connector-error"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_import_inside_a_call_is_named_with_its_place() {
        let stderr = "Traceback (most recent call last):\n  File \"/0/app.py\", line 37, in start_screening\n  File \"/0/app.py\", line 15, in _lazy_import\nModuleNotFoundError: No module named 'switchyard_missing_module'\n\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception";
        let hint = trap_hint(stderr).expect("a hint");
        assert!(
            hint.contains("imports module `switchyard_missing_module` inside a call (app.py, line 15, in _lazy_import)"),
            "{hint}"
        );
        assert!(hint.contains("top of app.py"), "{hint}");
    }

    #[test]
    fn a_thrown_js_error_is_named_with_its_export_and_the_fix() {
        let stderr = "invalid variant tag value `undefined` (received `Error: the vendor said no`) specified for `ConnectorError`\nStack:\n  export_screening_0_2_1$startScreening@/tmp/c1807abcc944/sources/initializer.js:1589:17\n";
        let hint = trap_hint(stderr).expect("a hint");
        assert!(
            hint.contains("threw an Error (\"the vendor said no\") from `startScreening`"),
            "{hint}"
        );
        assert!(
            hint.contains("logic.js") && hint.contains("tag: 'transient'"),
            "{hint}"
        );
        assert_eq!(trap_hint("thread panicked at src/lib.rs"), None);
    }

    #[test]
    fn a_js_build_with_wasi_http_names_the_flag() {
        let error = "component imports instance `wasi:http/types@0.2.10`, but a matching implementation was not found in the linker: instance export `fields` has the wrong type: resource implementation is missing";
        assert!(load_hint(error).is_some_and(|h| h.contains("--disable http fetch-event")));
        assert_eq!(load_hint("export `screening` is missing"), None);
    }
}
