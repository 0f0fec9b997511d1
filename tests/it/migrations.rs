//! `migrations/README.md` names, for every function, trigger and view that
//! exists after all migrations, the file holding its current definition.

use std::collections::BTreeMap;

/// What the migrations leave: each object and the last file that created it.
fn current_definitions() -> BTreeMap<String, String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut files: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "sql")).collect();
    files.sort();
    let mut objects = BTreeMap::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let sql = std::fs::read_to_string(&path).unwrap().to_lowercase();
        let words: Vec<&str> = sql.split(|c: char| c.is_whitespace() || c == '(' || c == ';').filter(|w| !w.is_empty()).collect();
        for (i, window) in words.windows(4).enumerate() {
            let (created, dropped) = match window {
                ["create", "or", "replace", "function" | "view" | "trigger"] => (words.get(i + 4), None),
                ["create", "function" | "view" | "trigger", name, _] => (Some(name), None),
                ["drop", "function" | "view" | "trigger", "if", "exists"] => (None, words.get(i + 4)),
                ["drop", "function" | "view" | "trigger", name, _] => (None, Some(name)),
                _ => (None, None),
            };
            if let Some(name) = created {
                objects.insert(name.to_string(), file.clone());
            }
            if let Some(name) = dropped {
                objects.remove(*name);
            }
        }
    }
    objects
}

#[test]
fn the_readme_names_where_each_function_and_view_is_defined_now() {
    let readme = include_str!("../../migrations/README.md");
    let listed: BTreeMap<String, String> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
            match cells.as_slice() {
                [object, file] if object.starts_with('`') && file.ends_with(".sql`") => {
                    Some((object.trim_matches('`').to_owned(), file.trim_matches('`').to_owned()))
                }
                _ => None,
            }
        })
        .collect();
    let current = current_definitions();
    assert!(current.contains_key("duet_append") && current.contains_key("unread_messages"), "{current:?}");
    assert_eq!(listed, current, "migrations/README.md's table against the migrations");
}
