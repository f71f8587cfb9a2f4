//! `rocketcore-bench`: see `rocketcore-bench --help` and the crate docs.

fn main() {
    let code = rocketcore_bench::cli::main_with(std::env::args().collect());
    std::process::exit(code);
}
