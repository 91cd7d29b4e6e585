//! Links the kernel with its linker script (the image layout: sections at KIMAGE_VBASE, loaded at
//! their physical addresses), wherever cargo runs the linker from.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rerun-if-changed=linker.ld");
}
