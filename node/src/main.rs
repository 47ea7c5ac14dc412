fn main() -> std::process::ExitCode {
    fiberlb_node::cli::main()
}
