// `sqlx::migrate!` embeds the migrations at compile time but cannot tell
// cargo about files added to their directories (sqlx's documented
// build-script line): without it a new migration is left out of an
// incremental build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
