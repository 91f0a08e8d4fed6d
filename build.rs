//! Link the `shmarrow` binary at a fixed address (`-no-pie`): the dynamic loader then has no
//! relocations to apply to it at start (a position-independent build of this binary has about
//! 90,000, which write into about 2 MB of its data at every start), so each process of the
//! binary starts sooner. `map`/`reduce --processes` start one per worker. The library, and the
//! Python extension built from it, stay position-independent.
fn main() {
    println!("cargo:rustc-link-arg-bin=shmarrow=-no-pie");
}
