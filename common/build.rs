// `sqlx::migrate!` embeds migrations/ at build time; rebuild when a file is added there.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
