//! The layer order against the crates' dependencies. Boots nothing.
//!
//! The order is written once, in the "Layers" table of `docs/architecture.md`: one row per
//! workspace member, with its layer number. A crate may depend only on crates of lower layers;
//! a dependency on a crate of its own layer (sideways) or of a higher one (upward) fails here,
//! naming the crate, the dependency, their layers and the manifest section. Checked: every
//! member's `[dependencies]`, `[build-dependencies]` and their `[target.*.…]` forms, however
//! written (`name = { … }`, `name.workspace = true`, `[dependencies.name]`, `package = "…"`
//! renames, `workspace = true` resolved through the root's `[workspace.dependencies]`, `path`
//! dependencies through the manifest they point at). Not checked: dev-dependencies, which build
//! only a crate's own host tests.
//!
//! This crate depends on no TOML crate, so the manifests are read by the small reader at the end
//! of this file: tables, array tables, dotted and quoted keys, strings (basic, literal,
//! multi-line), booleans, other scalars as text, arrays and inline tables, comments anywhere TOML
//! allows them.

use broadside_tests::repo_root;
use std::collections::BTreeMap;
use std::path::Path;

/// Where the order is written, relative to the repository's root.
const LAYERS_DOC: &str = "docs/architecture.md";
/// The heading of the table in it.
const LAYERS_HEADING: &str = "## Layers";

#[test]
fn every_crate_depends_only_on_lower_layers() {
    let root = repo_root();
    let doc = read(&root.join(LAYERS_DOC));
    let layers = layers_from_doc(&doc).unwrap_or_else(|e| panic!("{LAYERS_DOC}: {e}"));
    let root_manifest = parse_manifest(root, "Cargo.toml");
    let workspace_deps = dependency_table(&root_manifest, &["workspace", "dependencies"]);
    let mut crates = Vec::new();
    for member in strings(&root_manifest, &["workspace", "members"]) {
        assert!(
            !member.contains('*'),
            "Cargo.toml: member {member:?}: globs are not read by this test; name each member"
        );
        let manifest = parse_manifest(root, &format!("{member}/Cargo.toml"));
        let name = package_name(&manifest)
            .unwrap_or_else(|| panic!("{member}/Cargo.toml: no [package] name"));
        let dir = root.join(&member);
        let mut deps = Vec::new();
        for (section, key, fields) in dependencies(&manifest) {
            let package = resolve(&key, &fields, &dir, &workspace_deps, root, &|path| {
                package_name(&parse_manifest(path, "Cargo.toml"))
                    .unwrap_or_else(|| panic!("{}/Cargo.toml: no [package] name", path.display()))
            });
            deps.push((section, package));
        }
        crates.push(Crate {
            name,
            manifest: format!("{member}/Cargo.toml"),
            deps,
        });
    }
    let member_deps = crates
        .iter()
        .flat_map(|c| &c.deps)
        .filter(|(_, dep)| layers.iter().any(|(name, _)| name == dep))
        .count();
    assert!(
        member_deps > 0,
        "no crate depends on another workspace member: the manifests were not read as written"
    );
    let problems = check(&layers, &crates);
    assert!(
        problems.is_empty(),
        "the crates break the layer order of {LAYERS_DOC} (\"Layers\"): a crate may depend only \
         on crates of lower layers.\n  {}",
        problems.join("\n  ")
    );
}

/// The check itself on made-up manifests: an upward and a sideways dependency are caught, in
/// each way a manifest can write them; downward ones, foreign crates and dev-dependencies pass.
#[test]
fn the_check_catches_upward_and_sideways_dependencies() {
    let doc = "# x\n\n## Layers\n\ntext\n\n| layer | crate | what |\n|---:|---|---|\n\
               | 2 | `top` | t |\n| 1 | `mid` | m |\n| 0 | `low`, `low2` | l |\n\nafter\n";
    let layers = layers_from_doc(doc).unwrap();
    let row = |n: &str, l: u32| (n.to_string(), l);
    assert_eq!(
        layers,
        [row("top", 2), row("mid", 1), row("low", 0), row("low2", 0)]
    );
    let workspace = parse_toml(
        "[workspace.dependencies]\ntop = { path = \"top\" }\nmid = { path = \"mid\" }\n\
         mid-alias = { path = \"m\", package = \"mid\" }\n",
    )
    .unwrap();
    let workspace_deps = dependency_table(&workspace, &["workspace", "dependencies"]);
    let read_name = |path: &Path| path.file_name().unwrap().to_string_lossy().into_owned();
    let crate_of = |name: &str, manifest: &str| {
        let parsed = parse_toml(manifest).unwrap();
        let deps = dependencies(&parsed)
            .into_iter()
            .map(|(section, key, fields)| {
                let package = resolve(
                    &key,
                    &fields,
                    Path::new("/ws/x"),
                    &workspace_deps,
                    Path::new("/ws"),
                    &read_name,
                );
                (section, package)
            })
            .collect();
        Crate {
            name: name.to_string(),
            manifest: format!("{name}/Cargo.toml"),
            deps,
        }
    };
    let crates = [
        crate_of(
            "top",
            "[dependencies]\nmid.workspace = true\nlow = \"1\"\nlog = \"0.4\"\n",
        ),
        crate_of(
            "mid",
            "[dependencies]\nlow = { path = \"../low\" }\n\
             [target.'cfg(loom)'.dependencies.up]\npackage = \"top\"\n\
             [dev-dependencies]\ntop = { path = \"../top\" }\n",
        ),
        crate_of(
            "low",
            "[build-dependencies]\nmid-alias = { workspace = true }\n",
        ),
        crate_of(
            "low2",
            "[dependencies]\n\"low\" = { version = \"1\" } # a comment\n",
        ),
    ];
    let problems = check(&layers, &crates);
    assert_eq!(
        problems,
        [
            "mid (layer 1) depends on top (layer 2), in [target.cfg(loom).dependencies] of \
             mid/Cargo.toml: an upward dependency",
            "low (layer 0) depends on mid (layer 1), in [build-dependencies] of low/Cargo.toml: \
             an upward dependency",
            "low2 (layer 0) depends on low (layer 0), in [dependencies] of low2/Cargo.toml: a \
             sideways dependency (same layer)",
        ],
    );
    let missing = [crate_of("stray", "")];
    assert_eq!(
        check(&layers, &missing),
        [
            "stray is a workspace member but has no row in the layers table",
            "the layers table names top, which is no workspace member",
            "the layers table names mid, which is no workspace member",
            "the layers table names low, which is no workspace member",
            "the layers table names low2, which is no workspace member",
        ]
    );
    assert!(layers_from_doc("# no table\n").is_err());
    assert!(layers_from_doc("## Layers\n\n| layer | crate |\n|---|---|\n| x | `a` |\n").is_err());
    assert!(
        layers_from_doc("## Layers\n\n| layer | crate |\n|---|---|\n| 1 | `a` |\n| 0 | `a` |\n")
            .is_err()
    );
}

#[test]
fn the_toml_reader_reads_what_manifests_use() {
    let doc = r#"
cargo-features = ["per-package-target"] # a comment
[package]
name = "a-b"   # "not a string"
description = "with # and \" and \\ inside"
version.workspace = true
literal = 'C:\path'
multi = """
two
lines"""

[dependencies]
x = { version = "1", features = [
    "f", # trailing comma, comment, newlines
] }
"quoted-key".workspace = true

[target.'cfg(target_arch = "aarch64")'.dependencies]
y = "2"

[[bin]]
name = "b"
test = false
"#;
    let entries = parse_toml(doc).unwrap();
    let flat = flatten(&entries);
    let get = |path: &[&str]| {
        flat.iter()
            .find(|(p, _)| p.iter().map(String::as_str).eq(path.iter().copied()))
            .map(|(_, v)| v.clone())
    };
    let s = |t: &str| Some(Value::Str(t.to_string()));
    assert_eq!(get(&["package", "name"]), s("a-b"));
    assert_eq!(
        get(&["package", "description"]),
        s("with # and \" and \\ inside")
    );
    assert_eq!(
        get(&["package", "version", "workspace"]),
        Some(Value::Bool(true))
    );
    assert_eq!(get(&["package", "literal"]), s("C:\\path"));
    assert_eq!(get(&["package", "multi"]), s("two\nlines"));
    assert_eq!(get(&["dependencies", "x", "version"]), s("1"));
    assert_eq!(
        get(&["dependencies", "x", "features"]),
        Some(Value::Array(vec![Value::Str("f".into())]))
    );
    assert_eq!(
        get(&["dependencies", "quoted-key", "workspace"]),
        Some(Value::Bool(true))
    );
    assert_eq!(
        get(&[
            "target",
            "cfg(target_arch = \"aarch64\")",
            "dependencies",
            "y"
        ]),
        s("2")
    );
    assert_eq!(get(&["bin", "test"]), Some(Value::Bool(false)));
    let deps: Vec<_> = dependencies(&entries)
        .into_iter()
        .map(|(section, key, _)| (section, key))
        .collect();
    assert_eq!(
        deps,
        [
            ("[dependencies]".to_string(), "x".to_string()),
            ("[dependencies]".to_string(), "quoted-key".to_string()),
            (
                "[target.cfg(target_arch = \"aarch64\").dependencies]".to_string(),
                "y".to_string()
            ),
        ]
    );
    for bad in [
        "a = ",
        "a = \"open",
        "[open",
        "a = [1, 2",
        "a = 1 b = 2",
        "= 1",
    ] {
        assert!(parse_toml(bad).is_err(), "{bad:?} should not parse");
    }
}

// ----------------------------------------------------------------------------------------------
// The check

/// A workspace member and the packages it depends on (workspace members or not), each with the
/// manifest section it is declared in.
struct Crate {
    name: String,
    manifest: String,
    deps: Vec<(String, String)>,
}

/// Every way `crates` break `layers` (the table's rows, highest first), one line each: members
/// without a row, rows without a member, and dependencies on a crate of the same layer or above.
/// Empty when the order holds.
fn check(layers: &[(String, u32)], crates: &[Crate]) -> Vec<String> {
    let layer_of: BTreeMap<&str, u32> = layers.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    let mut problems = Vec::new();
    for c in crates {
        if !layer_of.contains_key(c.name.as_str()) {
            problems.push(format!(
                "{} is a workspace member but has no row in the layers table",
                c.name
            ));
        }
    }
    for (name, _) in layers {
        if !crates.iter().any(|c| c.name == *name) {
            problems.push(format!(
                "the layers table names {name}, which is no workspace member"
            ));
        }
    }
    for c in crates {
        let Some(&own) = layer_of.get(c.name.as_str()) else {
            continue;
        };
        for (section, dep) in &c.deps {
            let Some(&theirs) = layer_of.get(dep.as_str()) else {
                continue; // not a workspace member: a crate from a registry
            };
            let what = if theirs > own {
                "an upward dependency"
            } else if theirs == own {
                "a sideways dependency (same layer)"
            } else {
                continue;
            };
            problems.push(format!(
                "{} (layer {own}) depends on {dep} (layer {theirs}), in {section} of {}: {what}",
                c.name, c.manifest
            ));
        }
    }
    problems
}

/// The rows of the first table under [`LAYERS_HEADING`]: each row's crates (the names in
/// backticks in its second cell) with its layer (the number in its first cell), in table order.
fn layers_from_doc(doc: &str) -> Result<Vec<(String, u32)>, String> {
    let mut lines = doc
        .lines()
        .enumerate()
        .skip_while(|(_, l)| l.trim_end() != LAYERS_HEADING);
    if lines.next().is_none() {
        return Err(format!("no {LAYERS_HEADING:?} heading"));
    }
    let mut rows: Vec<(String, u32)> = Vec::new();
    let mut in_table = false;
    for (n, line) in lines {
        let line = line.trim();
        if !line.starts_with('|') {
            if in_table || line.starts_with("## ") {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let separator = cells
            .iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')));
        if separator || cells[0].eq_ignore_ascii_case("layer") {
            continue;
        }
        let n = n + 1;
        let layer: u32 = cells[0].parse().map_err(|_| {
            format!(
                "line {n}: the first cell, {:?}, is not a layer number",
                cells[0]
            )
        })?;
        let names: Vec<&str> = cells
            .get(1)
            .copied()
            .unwrap_or("")
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        if names.is_empty() {
            return Err(format!("line {n}: no `crate` in the second cell"));
        }
        for name in names {
            if rows.iter().any(|(r, _)| r == name) {
                return Err(format!("line {n}: {name} has a row already"));
            }
            rows.push((name.to_string(), layer));
        }
    }
    if rows.is_empty() {
        return Err(format!("no table under {LAYERS_HEADING:?}"));
    }
    Ok(rows)
}

// ----------------------------------------------------------------------------------------------
// What the manifests say

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_manifest(dir: &Path, rel: &str) -> Vec<Entry> {
    let path = dir.join(rel);
    parse_toml(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `[package] name`.
fn package_name(entries: &[Entry]) -> Option<String> {
    flatten(entries).into_iter().find_map(|(p, v)| match v {
        Value::Str(s) if p == ["package", "name"] => Some(s),
        _ => None,
    })
}

/// The strings of the array at `path` (`workspace.members`).
fn strings(entries: &[Entry], path: &[&str]) -> Vec<String> {
    let found = flatten(entries)
        .into_iter()
        .find(|(p, _)| p.iter().map(String::as_str).eq(path.iter().copied()));
    match found {
        Some((_, Value::Array(items))) => items
            .into_iter()
            .map(|v| match v {
                Value::Str(s) => s,
                other => panic!("{}: not a string: {other:?}", path.join(".")),
            })
            .collect(),
        other => panic!("{}: not an array: {other:?}", path.join(".")),
    }
}

/// A dependency's fields: `version`, `path`, `package`, `workspace`, ... (a bare `name = "1"` is
/// its `version`).
type Fields = BTreeMap<String, Value>;

/// The dependencies of the table at `prefix` (`workspace.dependencies`), by key.
fn dependency_table(entries: &[Entry], prefix: &[&str]) -> BTreeMap<String, Fields> {
    let mut table: BTreeMap<String, Fields> = BTreeMap::new();
    for (path, value) in flatten(entries) {
        if path.len() <= prefix.len() || !path.iter().zip(prefix).all(|(a, b)| a == b) {
            continue;
        }
        let fields = table.entry(path[prefix.len()].clone()).or_default();
        add_field(fields, &path[prefix.len() + 1..], value);
    }
    table
}

/// Every dependency in a `[dependencies]` or `[build-dependencies]` table, plain or under
/// `[target.X]`, however written, in file order: (section, key, fields). Dev-dependencies are
/// left out.
fn dependencies(entries: &[Entry]) -> Vec<(String, String, Fields)> {
    let is_deps = |k: Option<&String>| {
        matches!(
            k.map(String::as_str),
            Some("dependencies" | "build-dependencies")
        )
    };
    let mut out: Vec<(String, String, Fields)> = Vec::new();
    for (path, value) in flatten(entries) {
        let at = if is_deps(path.first()) {
            0
        } else if path.first().map(String::as_str) == Some("target") && is_deps(path.get(2)) {
            2
        } else {
            continue;
        };
        let Some(key) = path.get(at + 1) else {
            continue; // the section's own header
        };
        let section = format!("[{}]", path[..=at].join("."));
        let i = match out.iter().position(|(s, k, _)| *s == section && k == key) {
            Some(i) => i,
            None => {
                out.push((section, key.clone(), Fields::new()));
                out.len() - 1
            }
        };
        add_field(&mut out[i].2, &path[at + 2..], value);
    }
    out
}

fn add_field(fields: &mut Fields, rest: &[String], value: Value) {
    if matches!(value, Value::Table(_)) {
        return; // a header or an empty inline table: nothing said
    }
    let name = if rest.is_empty() {
        "version".to_string()
    } else {
        rest.join(".")
    };
    fields.insert(name, value);
}

/// The package a dependency names: `package = "…"` if it renames, else the package at its
/// `path` (read with `package_at`), else its key; `workspace = true` looks the key up in the
/// root's `[workspace.dependencies]` (paths there are relative to `root`).
fn resolve(
    key: &str,
    fields: &Fields,
    dir: &Path,
    workspace_deps: &BTreeMap<String, Fields>,
    root: &Path,
    package_at: &dyn Fn(&Path) -> String,
) -> String {
    if fields.get("workspace") == Some(&Value::Bool(true)) {
        return match workspace_deps.get(key) {
            Some(ws) => resolve(key, ws, root, &BTreeMap::new(), root, package_at),
            None => key.to_string(), // cargo refuses it; nothing to check here
        };
    }
    match (fields.get("package"), fields.get("path")) {
        (Some(Value::Str(package)), _) => package.clone(),
        (_, Some(Value::Str(path))) => package_at(&dir.join(path)),
        _ => key.to_string(),
    }
}

// ----------------------------------------------------------------------------------------------
// A reader for the TOML that Cargo manifests use

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    /// Numbers, dates: their text.
    Other(String),
    Array(Vec<Value>),
    /// An inline table; also, with no entries, the marker a `[header]` leaves.
    Table(Vec<Entry>),
}

/// A key's full path (its table's path, then its own dotted key) and its value.
type Entry = (Vec<String>, Value);

/// The entries of a document in order. Each `[table]` or `[[array table]]` header leaves an
/// entry of its own, an empty [`Value::Table`], so that a table with no keys is still seen.
fn parse_toml(text: &str) -> Result<Vec<Entry>, String> {
    let mut reader = Reader {
        s: text.chars().collect(),
        i: 0,
    };
    reader
        .document()
        .map_err(|e| format!("line {}: {e}", reader.line()))
}

/// `entries` with inline tables spread into dotted paths: `a = { b = 1 }` is `a.b = 1`.
fn flatten(entries: &[Entry]) -> Vec<Entry> {
    let mut out = Vec::new();
    for (path, value) in entries {
        match value {
            Value::Table(inner) if !inner.is_empty() => {
                for (p, v) in flatten(inner) {
                    out.push(([path.clone(), p].concat(), v));
                }
            }
            _ => out.push((path.clone(), value.clone())),
        }
    }
    out
}

struct Reader {
    s: Vec<char>,
    i: usize,
}

impl Reader {
    fn line(&self) -> usize {
        self.s[..self.i.min(self.s.len())]
            .iter()
            .filter(|&&c| c == '\n')
            .count()
            + 1
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn starts_with(&self, t: &str) -> bool {
        t.chars()
            .enumerate()
            .all(|(k, c)| self.s.get(self.i + k) == Some(&c))
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(c) => format!("{c:?}"),
            None => "the end of the file".to_string(),
        }
    }

    fn eat(&mut self, c: char) -> Result<(), String> {
        if self.peek() != Some(c) {
            return Err(format!("expected {c:?}, found {}", self.found()));
        }
        self.i += 1;
        Ok(())
    }

    fn blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.i += 1;
        }
    }

    fn comment(&mut self) {
        if self.peek() == Some('#') {
            while !matches!(self.peek(), None | Some('\n')) {
                self.i += 1;
            }
        }
    }

    /// Blanks, comments and line ends.
    fn gaps(&mut self) {
        loop {
            self.blanks();
            self.comment();
            if !matches!(self.peek(), Some('\n' | '\r')) {
                return;
            }
            self.i += 1;
        }
    }

    fn end_of_line(&mut self) -> Result<(), String> {
        self.blanks();
        self.comment();
        if self.starts_with("\r\n") {
            self.i += 1;
        }
        match self.peek() {
            None => Ok(()),
            Some('\n') => {
                self.i += 1;
                Ok(())
            }
            _ => Err(format!(
                "expected the end of the line, found {}",
                self.found()
            )),
        }
    }

    fn document(&mut self) -> Result<Vec<Entry>, String> {
        let mut entries = Vec::new();
        let mut table: Vec<String> = Vec::new();
        loop {
            self.gaps();
            match self.peek() {
                None => return Ok(entries),
                Some('[') => {
                    self.i += 1;
                    let array = self.peek() == Some('[');
                    if array {
                        self.i += 1;
                    }
                    table = self.key_path()?;
                    self.eat(']')?;
                    if array {
                        self.eat(']')?;
                    }
                    self.end_of_line()?;
                    entries.push((table.clone(), Value::Table(Vec::new())));
                }
                Some(_) => {
                    let (key, value) = self.key_value()?;
                    entries.push(([table.clone(), key].concat(), value));
                    self.end_of_line()?;
                }
            }
        }
    }

    fn key_value(&mut self) -> Result<Entry, String> {
        let key = self.key_path()?;
        self.eat('=')?;
        self.blanks();
        Ok((key, self.value()?))
    }

    /// `a.b."c d"`, with blanks around the parts (eaten, after the last too).
    fn key_path(&mut self) -> Result<Vec<String>, String> {
        let mut path = Vec::new();
        loop {
            self.blanks();
            path.push(self.key()?);
            self.blanks();
            if self.peek() != Some('.') {
                return Ok(path);
            }
            self.i += 1;
        }
    }

    fn key(&mut self) -> Result<String, String> {
        match self.peek() {
            Some('"') => self.basic_string(),
            Some('\'') => self.literal_string(),
            _ => {
                let start = self.i;
                let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
                while self.peek().is_some_and(bare) {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(format!("expected a key, found {}", self.found()));
                }
                Ok(self.s[start..self.i].iter().collect())
            }
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some('"') => self.basic_string().map(Value::Str),
            Some('\'') => self.literal_string().map(Value::Str),
            Some('[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.gaps();
                    if self.peek() == Some(']') {
                        self.i += 1;
                        return Ok(Value::Array(items));
                    }
                    items.push(self.value()?);
                    self.gaps();
                    match self.peek() {
                        Some(',') => self.i += 1,
                        Some(']') => {}
                        _ => return Err(format!("expected ',' or ']', found {}", self.found())),
                    }
                }
            }
            Some('{') => {
                self.i += 1;
                let mut entries = Vec::new();
                loop {
                    self.gaps();
                    if self.peek() == Some('}') {
                        self.i += 1;
                        return Ok(Value::Table(entries));
                    }
                    entries.push(self.key_value()?);
                    self.gaps();
                    match self.peek() {
                        Some(',') => self.i += 1,
                        Some('}') => {}
                        _ => return Err(format!("expected ',' or '}}', found {}", self.found())),
                    }
                }
            }
            _ => {
                let start = self.i;
                let ends = |c: char| matches!(c, ',' | ']' | '}' | '#' | ' ' | '\t' | '\n' | '\r');
                while self.peek().is_some_and(|c| !ends(c)) {
                    self.i += 1;
                }
                let text: String = self.s[start..self.i].iter().collect();
                match text.as_str() {
                    "" => Err(format!("expected a value, found {}", self.found())),
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    _ => Ok(Value::Other(text)),
                }
            }
        }
    }

    /// `"…"` with escapes, or `"""…"""` over lines (a newline right after the opening quotes is
    /// dropped; a backslash at the end of a line drops the line end and the blanks after it).
    fn basic_string(&mut self) -> Result<String, String> {
        let multi = self.starts_with("\"\"\"");
        self.open_string(multi);
        let mut out = String::new();
        loop {
            if multi && self.starts_with("\"\"\"") {
                self.i += 3;
                return Ok(out);
            }
            let Some(c) = self.peek() else {
                return Err("a string runs to the end of the file".to_string());
            };
            self.i += 1;
            match c {
                '"' if !multi => return Ok(out),
                '\n' if !multi => return Err("a string runs to the end of the line".to_string()),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err("a string ends in a backslash".to_string());
                    };
                    self.i += 1;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'e' => out.push('\u{1b}'),
                        '"' | '\\' => out.push(e),
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex: String = self.s.iter().skip(self.i).take(n).collect();
                            self.i += n;
                            let ch = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| format!("a bad escape \\{e}{hex}"))?;
                            out.push(ch);
                        }
                        ' ' | '\t' | '\r' | '\n' if multi => {
                            while matches!(self.peek(), Some(' ' | '\t' | '\r' | '\n')) {
                                self.i += 1;
                            }
                        }
                        _ => return Err(format!("an unknown escape \\{e}")),
                    }
                }
                _ => out.push(c),
            }
        }
    }

    /// `'…'` as it is, or `'''…'''` over lines.
    fn literal_string(&mut self) -> Result<String, String> {
        let multi = self.starts_with("'''");
        self.open_string(multi);
        let mut out = String::new();
        loop {
            if multi && self.starts_with("'''") {
                self.i += 3;
                return Ok(out);
            }
            let Some(c) = self.peek() else {
                return Err("a string runs to the end of the file".to_string());
            };
            self.i += 1;
            match c {
                '\'' if !multi => return Ok(out),
                '\n' if !multi => return Err("a string runs to the end of the line".to_string()),
                _ => out.push(c),
            }
        }
    }

    /// Past the opening quote or quotes, and past a line end right after three.
    fn open_string(&mut self, multi: bool) {
        self.i += if multi { 3 } else { 1 };
        if multi {
            if self.starts_with("\r\n") {
                self.i += 2;
            } else if self.peek() == Some('\n') {
                self.i += 1;
            }
        }
    }
}
