/// mimalloc instead of glibc malloc: the proxy allocates and frees per request and per
/// connection from many tasks; mimalloc's thread-local free lists make that markedly
/// cheaper (see `[profile.release]` in the workspace Cargo.toml for the figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    fiberlb_node::cli::main()
}
