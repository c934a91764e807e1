//! The `fuse` binary: parse arguments, set up logging, hand over to the library,
//! and turn the outcome into an exit code (0 ok, 1 failed, 2 invalid input or usage).

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the daemon's many small, short-lived allocations (requests, JSON
/// values, history rows) cost a quarter of its CPU under glibc's allocator,
/// and it gives freed memory back to the system sooner. The `system-alloc`
/// feature leaves it out, for heap profilers that watch `malloc`
/// (`heaptrack`; see docs/performance.md).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = fuse::cli::Cli::parse();
    fuse::cli::init_tracing(&cli);
    match fuse::cli::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            if fuse::cli::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            // stderr may be gone (a closed terminal, a full disk): no panic over it.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            fuse::cli::exit_code_for(&err)
        }
    }
}
