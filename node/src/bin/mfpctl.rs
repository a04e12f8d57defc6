//! `mfpctl`: inspect and change an mfplane cluster. The logic is in
//! [`mfplane_node::ctl`].

use clap::Parser;
use mfplane_node::ctl::{Cli, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mfpctl: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
