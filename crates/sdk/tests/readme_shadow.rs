//! The README's "SDK shadow API" examples are those of `examples/shadow.rs`, which is
//! compiled (and run against a broker by hand): every block between `// README: <name>`
//! and `// README: end` there must appear verbatim in the README.

fn blocks(source: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in source.lines() {
        match (line.trim(), current.as_mut()) {
            ("// README: end", Some(lines)) => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            (marker, None) if marker.starts_with("// README: ") => current = Some(Vec::new()),
            (_, Some(lines)) => lines.push(line),
            _ => {}
        }
    }
    assert!(current.is_none(), "unterminated README block");
    blocks
}

#[test]
fn readme_shows_the_shadow_example_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("examples/shadow.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let blocks = blocks(&example);
    assert_eq!(blocks.len(), 2, "the iOS-style and the async example");
    for block in blocks {
        assert!(
            readme.contains(&block),
            "README.md lacks this block of examples/shadow.rs:\n{block}"
        );
    }
}
