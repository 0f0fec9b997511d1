/// The committed spec is what the code generates: regenerate it with
/// `cargo run --bin duet -- openapi > openapi/openapi.json`.
#[test]
fn committed_openapi_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
        .expect("openapi/openapi.json exists");
    let generated = duet::openapi_spec();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is stale: run `cargo run --bin duet -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn the_served_spec_is_the_committed_one() {
    let app = crate::helpers::TestApp::spawn().await;
    let (status, served) = app.get("/openapi.json", None).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let generated: serde_json::Value = serde_json::from_str(&duet::openapi_spec()).unwrap();
    assert_eq!(served, generated);
}

/// Every setting the code reads is documented in the README's settings table.
#[test]
fn every_setting_is_documented_in_the_readme() {
    let settings = include_str!("../../common/src/settings.rs");
    let readme = include_str!("../../README.md");
    let missing: Vec<&str> = settings
        .split("env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|env| !readme.contains(&format!("| `{env}` |")))
        .collect();
    assert!(missing.is_empty(), "settings missing from README.md: {missing:?}");
}
