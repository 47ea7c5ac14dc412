//! Compiles `fiberlb.proto` with a vendored `protoc`, so a fresh machine needs no apt step.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("fiberlb_descriptor.bin"))
        // Serialize lets the CLI print any message as JSON (`-o json`); enums stay numbers
        // there and the CLI renders their names.
        .type_attribute(".fiberlb.v1", "#[derive(serde::Serialize)]")
        .compile_protos(&["fiberlb.proto"], &["."])?;
    println!("cargo:rerun-if-changed=fiberlb.proto");
    Ok(())
}
