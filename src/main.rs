use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("GANTRY_LOG"))
        .with_writer(std::io::stderr)
        .init();
    std::process::exit(gantry::run(gantry::cli::Cli::parse()));
}
